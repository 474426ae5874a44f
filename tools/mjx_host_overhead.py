"""Print, as JSON, the host time (µs) one jitted MJX step call takes to return, with the
model and data handed over whole (as `mjx.Model` / `mjx.Data`, as MJX's examples do and
`MjxBackend` did before) and flat (as `MjxBackend` does now: `FlatLayout`), per body.

What is timed is the call's own host work: each call is waited for before the next, and
both forms call a stand-in with the step's inputs and outputs but no physics
(`FlatLayout.stand_in`; for whole objects the same, taking and returning the pytrees),
which compiles in a moment where the real step takes minutes on a CPU (MyoArm, the fly):

- ``stand_in_us``: the state is donated and returned as it is: no device work at all,
  only the handling of the arguments and results (the overhead the issue asks about);
- ``stand_in_copying_us``: each output a copy of its input; on a CPU, XLA copies on the
  calling thread, so this adds a copy of the data (1.9 MB for the fly);
- ``step_us`` (bodies in ``--real``, default the mouse): the real step, compiled here;
  on a CPU, XLA runs part of it on the calling thread, so it grows with the physics.

The two forms take turns, ``--rounds`` times ``--calls`` calls each; min, median and max
are over all calls of a form.

    python tools/mjx_host_overhead.py [BODY ...] [--num-envs 1] [--calls 300] [--rounds 5] [--real mouse_forelimb]

Bodies default to mouse_forelimb myoarm fruitfly. ``mjx.make_data`` refuses the fly's
model (condim-1 geoms with the elliptic cone, 3.17); its data is made with a pyramidal
cone (the leaves' number and sizes change a little; its model is unchanged).
"""

import argparse
import copy
import json
import os
import platform

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

from neuromimic.bodies import get_body
from neuromimic.physics.mjx_backend import (
    FlatLayout,
    MjxBackend,
    control_step,
    summary,
    time_calls,
)
from neuromimic.physics.model import compile_model

FORMS = ("whole", "flat")


def _data_model(model: mujoco.MjModel) -> tuple[mujoco.MjModel, str | None]:
    """The model `mjx.make_data` accepts: ``model``, or a copy with a pyramidal cone."""
    try:
        mjx.make_data(mjx.put_model(model))
        return model, None
    except NotImplementedError as error:
        pyramidal = copy.deepcopy(model)
        pyramidal.opt.cone = mujoco.mjtCone.mjCONE_PYRAMIDAL
        return pyramidal, f"data made with a pyramidal cone: mjx.make_data refuses the model ({error})"


def _whole_stand_in(num_envs: int, copying: bool):
    """`FlatLayout.stand_in`, taking and returning the model and data whole."""

    def stand_in(mx, d, ctrl, xfrc):
        if copying:
            d = jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), d)
        return d, jnp.zeros(num_envs, dtype=bool)

    return jax.jit(stand_in) if copying else jax.jit(stand_in, donate_argnums=1)


def measure(key: str, num_envs: int, calls: int, rounds: int, real: bool) -> dict:
    body = get_body(key)
    model = compile_model(body)
    data_model, note = _data_model(model)
    mx = mjx.put_model(model)
    template = mjx.make_data(mjx.put_model(data_model))
    device = jax.devices()[0]
    layout = FlatLayout(mx, template, num_envs)
    flat_model = tuple(jax.device_put(x, device) for x in layout.flat_model(mx))
    ctrl = jax.device_put(np.zeros((num_envs, model.nu), np.float32), device)
    xfrc = jax.device_put(np.zeros((num_envs, model.nbody, 6), np.float32), device)

    def whole_data():
        return jax.device_put(
            jax.tree_util.tree_map(lambda x: np.broadcast_to(x, (num_envs, *x.shape)), template), device
        )

    def flat_state():
        return tuple(jax.device_put(x, device) for x in layout.flat_batch(template))

    result = {
        "arrays_per_call": {
            "whole": {
                "in": len(jax.tree_util.tree_leaves((mx, whole_data(), ctrl, xfrc))),
                "out": len(jax.tree_util.tree_leaves(whole_data())) + 1,
            },
            "flat": {"in": len(flat_model) + len(flat_state()) + 2, "out": len(flat_state()) + 1},
        },
    }
    for name, copying in (("stand_in_us", False), ("stand_in_copying_us", True)):
        result[name] = _interleaved(
            {
                "whole": (_whole_stand_in(num_envs, copying), lambda: (mx, whole_data(), ctrl, xfrc)),
                "flat": (layout.stand_in(copying), lambda: (flat_model, flat_state(), ctrl, xfrc)),
            },
            calls,
            rounds,
            carry=not copying,
        )
    if note:
        result["note"] = note
    if real:
        backend = MjxBackend(body, num_envs, substeps=2)
        backend.step(backend.view.ctrl.clone())  # applies the rest pose; compiles the step
        step_whole = jax.jit(
            jax.vmap(control_step(backend.substeps, backend.max_qvel, model.opt.timestep), in_axes=(None, 0, 0, 0))
        )
        result["step_us"] = _interleaved(
            {
                "whole": (step_whole, lambda: (mx, backend.data, ctrl, xfrc)),
                "flat": (backend._step_fn, lambda: (backend._model, backend._state, ctrl, xfrc)),
            },
            calls,
            rounds,
        )
    return result


def _interleaved(calls_of: dict, calls: int, rounds: int, carry: bool = False) -> dict:
    """Min, median and max µs of each form's calls, ``(function, make_args)``, taking
    turns, ``calls`` calls a turn (each turn with new arguments: a donated state is gone)."""
    seconds: dict[str, list[float]] = {form: [] for form in FORMS}
    for _ in range(rounds):
        for form in FORMS:
            function, make_args = calls_of[form]
            seconds[form] += time_calls(function, make_args(), calls, carry=carry)
    return {form: {name: round(value * 1e6, 1) for name, value in summary(seconds[form]).items()} for form in FORMS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bodies", nargs="*", default=["mouse_forelimb", "myoarm", "fruitfly"])
    parser.add_argument("--num-envs", type=int, default=1, help="B (small, so that the device never holds a call back)")
    parser.add_argument("--calls", type=int, default=300, help="calls per form and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each timing both forms in turn")
    parser.add_argument(
        "--real", nargs="*", default=["mouse_forelimb"], help="bodies whose real step is timed too (compiled here)"
    )
    args = parser.parse_args()
    result = {
        "tool": "mjx_host_overhead",
        "device": str(jax.devices()[0]),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "mujoco": mujoco.__version__,
        "num_envs": args.num_envs,
        "calls_per_round": args.calls,
        "rounds": args.rounds,
        "bodies": {key: measure(key, args.num_envs, args.calls, args.rounds, key in args.real) for key in args.bodies},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
