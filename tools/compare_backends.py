"""Print, as JSON, how far MJX or MuJoCo Warp (float32) is from native MuJoCo (float64)
after one control step.

Both backends start from the same random states inside the joint ranges and apply the
same random muscle excitations for one control step (2 physics steps of 5 ms).

    python tools/compare_backends.py [--backend mjx|warp] [--body mouse_forelimb] [--num-envs 16] [--seed 0]
"""

import argparse
import json

import torch

from neuromimic.bodies import get_body
from neuromimic.physics import make_backend

FIELDS = ("qpos", "qvel", "act", "site_pos_w", "actuator_length", "actuator_velocity", "actuator_force")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend", default="mjx", choices=["mjx", "warp"], help="the backend compared with native MuJoCo"
    )
    parser.add_argument("--body", default="mouse_forelimb")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    body, num_envs = get_body(args.body), args.num_envs
    backends = {name: make_backend(name, body, num_envs=num_envs, substeps=2) for name in ("mujoco", args.backend)}
    model = backends["mujoco"].model
    generator = torch.Generator().manual_seed(args.seed)
    low, high = (torch.from_numpy(model.jnt_range[:, i].copy()) for i in (0, 1))
    u = torch.rand(num_envs, model.nq, generator=generator, dtype=torch.float64)
    qpos = low + (high - low) * (0.2 + 0.6 * u)
    qvel = torch.randn(num_envs, model.nv, generator=generator, dtype=torch.float64)
    act = torch.rand(num_envs, model.na, generator=generator, dtype=torch.float64)
    ctrl = torch.rand(num_envs, model.nu, generator=generator)
    for backend in backends.values():
        backend.reset(torch.ones(num_envs, dtype=torch.bool), qpos, qvel, act)
        backend.step(ctrl)
    native, other = backends["mujoco"].view, backends[args.backend].view
    result = {
        "backend": args.backend,
        "body": args.body,
        "num_envs": num_envs,
        "max_abs_difference": {
            name: (getattr(native, name) - getattr(other, name).double()).abs().max().item() for name in FIELDS
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
