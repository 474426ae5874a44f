"""Benchmarks that compare our environment with the bare simulator, in one run.

Each benchmark returns one JSON-serialisable dict; ``neuromimic bench ...`` prints it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import time

import lightning as L
import mujoco
import torch

from neuromimic.envs import EnvConfig, make_env
from neuromimic.training import PPOModule


def bench_env(env: EnvConfig | None = None, steps: int = 500, seed: int = 0, torch_threads: int | None = None) -> dict:
    """Control steps per second of `ImitationEnv` against the bare simulator, in one run.

    The bare simulator is the backend's own (`Backend.bare_seconds`): a single
    ``mujoco.rollout`` call for ``mujoco``, a jitted, vmapped ``lax.scan`` of ``mjx.step``
    over all control steps for ``mjx`` (the published JAX pipelines' inner loop), a CUDA
    graph of the substeps launched once per control step for ``warp``. Each runs the
    body's own model (without the sensors the env adds and reads once per control step),
    the same uniformly random muscle excitations [steps, B, nu] held for ``substeps``
    physics steps, from the env's state after its warm-up. The env's figure includes
    observation, reward, termination, automatic partial resets and the TensorDict.
    Everything is timed as training collects (`ImitationEnv.stepping`: torch on one thread
    on the CPU) unless ``torch_threads`` sets torch's thread count instead.

    Args:
        env: the env to time, as training builds it (``model.env`` of a fit config; None:
            `EnvConfig`'s defaults, the mouse forelimb's reaches).
        steps: control steps timed, of all ``env.num_envs`` bodies at once.
        seed: seed of the clip sampler and of the random excitations.
        torch_threads: torch's thread count while stepping (None: as training collects).

    Returns:
        ``{"steps_per_s", "backend_steps_per_s", "raw_steps_per_s",
        "raw_per_control_step_steps_per_s", "ratio", "backend_ratio", ...}`` where a step
        is one control step of one body and the ratios are to ``raw_steps_per_s``.
    """
    config = env or EnvConfig()
    num_envs = config.num_envs
    build_start = time.perf_counter()
    env = make_env(config, split=None, seed=seed)
    build_seconds = time.perf_counter() - build_start
    generator = torch.Generator().manual_seed(seed)
    actions = torch.rand(steps, num_envs, env.action_spec.shape[-1], generator=generator, device="cpu")
    actions = actions.to(env.device)

    td = env.reset()
    for i in range(min(10, steps)):  # warm-up (thread pool, first-call costs)
        td["action"] = actions[i]
        _, td = env.step_and_maybe_reset(td)

    def env_steps() -> None:
        nonlocal td
        for i in range(steps):
            td["action"] = actions[i]
            _, td = env.step_and_maybe_reset(td)

    controls = actions[..., : env.body.nu]

    def backend_steps() -> None:
        for i in range(steps):
            env.backend.step(controls[i])

    with env.stepping() if torch_threads is None else _torch_threads(torch_threads):
        env_seconds = _seconds(env_steps, env.device)
        backend_seconds = _seconds(backend_steps, env.device)
        raw_seconds = env.backend.bare_seconds(controls)
        closed_loop_seconds = env.backend.bare_seconds(controls, per_control_step=True)
        host = env.backend.host_seconds_per_call()

    result = {
        "benchmark": "env",
        "body": config.body,
        "backend": config.backend,
        "num_envs": num_envs,
        "steps": steps,
        "substeps": config.substeps,
        "proprioception": config.proprioception,
        **({"afferent_dt_ms": config.afferents.dt_ms} if config.proprioception != "joints" else {}),
        "steps_per_s": steps * num_envs / env_seconds,
        "physics_steps_per_s": steps * num_envs * config.substeps / env_seconds,
        # The backend alone (physics and the final-state sensor pass, no env work).
        "backend_steps_per_s": steps * num_envs / backend_seconds,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads_while_stepping": torch_threads or (1 if env.device.type == "cpu" else torch.get_num_threads()),
        "mujoco": mujoco.__version__,
        **env.backend.describe(),
        # Building the env: clips, backend, and the table of reset outputs.
        "env_build_s": build_seconds,
    }
    result["raw_steps_per_s"] = steps * num_envs / raw_seconds
    # The bare simulator called once per control step: the most any closed-loop env can do.
    result["raw_per_control_step_steps_per_s"] = steps * num_envs / closed_loop_seconds
    result["ratio"] = result["steps_per_s"] / result["raw_steps_per_s"]
    result["backend_ratio"] = result["backend_steps_per_s"] / result["raw_steps_per_s"]
    if host is not None:  # host time one simulator call takes to return (Backend.host_seconds_per_call)
        result["host_us_per_call"] = {name: seconds * 1e6 for name, seconds in host.items()}
    if env.device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(env.device)
        result["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(env.device) / 1e9
    return result


@contextlib.contextmanager
def _torch_threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _seconds(run, device: torch.device) -> float:
    """Wall-clock seconds of ``run()``, waiting for the device at both ends."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def bench_train(
    module: PPOModule | None = None, iterations: int = 20, accelerator: str = "auto", evaluation: bool = True
) -> dict:
    """End-to-end PPO throughput: environment steps consumed per second of training
    (collection, advantages and updates).

    The first PPO iteration (compilation, warm-up) is excluded from the timing, and so are
    the held-out evaluations PPO runs before and after training; ``evaluation=False`` skips
    them (they cost wall-clock time on a rented GPU, not throughput).

    Args:
        module: the `PPOModule` to train, as a fit config builds it (``model``; None: the
            bundled defaults, `PPOModule()`).
        iterations: PPO iterations; the first is not timed (at least 2).
        accelerator: Lightning's accelerator (``trainer.accelerator`` of a fit config).
        evaluation: run the held-out evaluations before and after training (untimed).

    Returns:
        ``{"train_env_steps_per_s", "optimiser_steps_per_s", "peak_memory_gb", ...}``.
    """
    if iterations < 2:
        raise ValueError("bench train needs at least 2 iterations (the first one is not timed)")
    module = module or PPOModule()
    if not evaluation:  # NaN errors without running: for throughput runs only
        module.evaluate = _no_held_out_evaluation
    num_envs = module.env_config.num_envs
    updates = module.updates_per_iteration
    starts: list[float] = []
    ends: list[float] = []

    def now(trainer) -> float:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)
        return time.perf_counter()

    class _Clock(L.Callback):  # PPO iterations only: not the evaluations before and after
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            starts.append(now(trainer))

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            ends.append(now(trainer))

    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        max_steps=iterations * updates,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=10**9,
        callbacks=[_Clock()],
    )
    trainer.fit(module)
    device = trainer.strategy.root_device
    seconds = ends[-1] - starts[1]
    timed_iterations = iterations - 1
    env_steps = timed_iterations * num_envs * module.ppo.rollout_steps
    result = {
        "benchmark": "train",
        "body": module.env_config.body,
        "backend": module.env_config.backend,
        "num_envs": num_envs,
        "iterations_timed": timed_iterations,
        "held_out_evaluation": evaluation,
        "train_env_steps_per_s": env_steps / seconds,
        "optimiser_steps_per_s": timed_iterations * updates / seconds,
        "device": str(device),
        "peak_memory_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
        result["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    return result


def _no_held_out_evaluation() -> dict[str, float]:
    """`PPOModule.evaluate` without the evaluation: NaN errors."""
    return {"site_pos_error_mm": float("nan"), "joint_pos_error_deg": float("nan"), "tracked_fraction": float("nan")}
