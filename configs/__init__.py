"""The training recipes (YAML), shipped inside srlib as the package ``srlib.configs``.

Read them with :func:`srlib.train.load_config` (by name, e.g. ``load_config("imagenet_ti")``) or
``python -m srlib.train --config imagenet_ti``; ``--list-recipes`` lists them.
"""
