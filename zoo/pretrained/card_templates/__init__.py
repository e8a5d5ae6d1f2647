"""Model-card templates, package data read with ``importlib.resources``: ``template.md`` (every card's layout)
and ``entries/NAME.md`` (optional prose for one weights-registry entry). No code lives here."""
