"""Print the model zoo: every registered model with its parameter counts and output shape.

Run as ``python -m srlib.models`` (``--models spikingresformer_ti spikformer_8_384`` for some).
"""

import argparse

import torch

from srlib.models import count_parameters, create_model, get_model_config, list_models


def zoo_rows(names: list[str] | None = None, batch_size: int = 1) -> list[dict]:
    """One row per model: name, parameters (with and without BN affine), output shape."""
    rows = []
    for name in names or list_models():
        model = create_model(name).eval()
        config = get_model_config(name)
        x = torch.zeros(batch_size, config.in_channels, config.img_size, config.img_size)
        with torch.no_grad():
            out = model(x)
        rows.append(dict(name=name, params=count_parameters(model),
                         params_no_bn=count_parameters(model, include_bn_affine=False),
                         input=tuple(x.shape), output=tuple(out.shape)))
    return rows


def format_table(rows: list[dict]) -> str:
    header = f"{'model':<28}{'params':>14}{'params w/o BN':>16}  {'input':<20}{'output':<16}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['name']:<28}{row['params']:>14,}{row['params_no_bn']:>16,}  "
                     f"{str(row['input']):<20}{str(row['output']):<16}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m srlib.models",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="names to show (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models or ()) - set(list_models()))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; expected some of {', '.join(list_models())}")
    print(format_table(zoo_rows(args.models)))


if __name__ == "__main__":
    main()
