"""The console commands: one module per command, each with ``parse_args(argv)`` and ``main(argv)``.

setup.py's entry points name them (``stag-tta`` is :mod:`stag_seg.commands.test_tta`, ...);
in a clone, ``tools/<module>.py`` runs the same ``main``.
"""
