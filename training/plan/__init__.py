"""``python -m training plan``: what a recipe costs on a named GPU (see :mod:`training.plan.command`)."""
