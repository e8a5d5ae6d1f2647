"""``python -m training explore GRID.yaml``: vary one characteristic of a method at a time and measure the effect.

Falcon & Cho (arXiv:2009.00104, sections 3-5) vary one of the five characteristics (augmentation, encoder,
extraction, similarity, loss) around a base method and hold the others, to "objectively distill the main drivers".
A grid file names the base (a recipe and its method row), the alternatives per characteristic, the seeds and a
budget per cell; every cell is one ordinary ``python -m training fit`` followed by the frozen kNN and linear-probe
evaluation (``training.downstream.frozen.frozen_evaluation``).

- ``grid``: read and expand the grid file (one-at-a-time or factorial design) into cells;
- ``validate``: build every cell's five parts and score one synthetic batch before anything trains;
- ``cell``: run one cell (the fit command in a subprocess, export, evaluation) and write its result atomically;
- ``evaluation``: the frozen evaluation on an optional fixed subset of the bank and test splits;
- ``report``: CSV, Markdown and one plot per axis from the cells' results;
- ``stats``: the verdict rule, a paired t-interval over seeds (and the t quantile it needs);
- ``claims``: the paper-claims table of ``docs/explore.md``, generated from the paper grid's committed cells;
- ``runner``: the command line (progress and ETA, resume, ``--jobs``, ``--collect``, ``--cell``).
"""
