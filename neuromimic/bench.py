"""Benchmarks that compare our environment with the bare simulator, in one run.

Each benchmark returns one JSON-serialisable dict; ``neuromimic bench ...`` prints it.
"""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import resource
import statistics
import time

import lightning as L
import mujoco
import torch

from neuromimic.bodies import get_body
from neuromimic.data.clips import load_clips
from neuromimic.envs import EnvConfig, make_env
from neuromimic.errors import InputError
from neuromimic.models import MLPCore
from neuromimic.training import PPOModule
from neuromimic.training.phases import PhaseClock


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
    module: PPOModule | None = None,
    iterations: int = 20,
    accelerator: str = "auto",
    evaluation: bool = True,
    profile: bool = False,
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
        profile: also time the phases of the timed iterations (`neuromimic.training.phases`:
            collection, its policy, env, physics, outputs and restarts, advantages, the
            update's loss, backward, clipping and Adam steps) and add them as ``phases``.

    Returns:
        ``{"train_env_steps_per_s", "optimiser_steps_per_s", "peak_memory_gb", ...}``, and
        ``phases`` (``{phase: {"ms_per_iteration", "share", "calls_per_iteration"}}``)
        with ``profile``.
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

    phases: list[PhaseClock] = []

    class _Clock(L.Callback):  # PPO iterations only: not the evaluations before and after
        def on_train_start(self, trainer, pl_module) -> None:
            if profile:
                phases.append(PhaseClock(trainer.strategy.root_device))
                phases[0].attach(pl_module, trainer.optimizers[0])

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            starts.append(now(trainer))
            if phases and len(starts) == 2:  # the first iteration is a warm-up
                phases[0].reset()

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
    if phases:
        result["phases"] = phases[0].report(timed_iterations, seconds)
    return result


def _no_held_out_evaluation() -> dict[str, float]:
    """`PPOModule.evaluate` without the evaluation: NaN errors."""
    return {"site_pos_error_mm": float("nan"), "joint_pos_error_deg": float("nan"), "tracked_fraction": float("nan")}


def bench_peer(
    module: PPOModule | None = None, rounds: int = 7, steps: int = 200, iterations: int = 4, seed: int = 0
) -> dict:
    """Our env and PPO against what a PyTorch lab writes without us (`neuromimic.peer`: a
    gymnasium env of the same body in TorchRL's ``GymWrapper``, TorchRL's PPO recipe),
    interleaved in one process.

    Each round times ``steps`` control steps of random actions in both envs, then
    ``iterations`` PPO iterations of both trainers (ours as `bench_train`, on the CPU, its
    first iteration untimed; the peer's after one untimed iteration in the first round),
    alternating which goes first. The peer has the same body, substeps, clips, number of
    bodies, batch (B x rollout_steps), epochs, minibatches, learning rate and network sizes.

    Args:
        module: the `PPOModule` whose env and PPO are compared, as a fit config builds it
            (``model``; None: the bundled defaults). Its controller must be an `MLPCore` one.
        rounds: interleaved rounds; the JSON gives the min, median and max of each side.
        steps: control steps of each env per round.
        iterations: PPO iterations of each trainer per round.
        seed: seed of the random actions, the start samplers and the peer's networks.

    Returns:
        ``{"env_steps_per_s": {"ours", "peer"}, "train_env_steps_per_s": {"ours", "peer"},
        "env_ratio", "env_ratio_per_thread", "train_ratio", "threads", ...}``: each side's
        ``{"min", "median", "max", "runs"}``, the ratios ours over the peer's of the
        medians, per thread dividing each env's by its physics threads.
    """
    try:
        from neuromimic import peer
    except ModuleNotFoundError as error:
        raise InputError(
            f"bench peer needs {error.name}: pip install 'neuromimic[test]' or pip install gymnasium"
        ) from None
    module = module or PPOModule()
    core = module.controller.core
    if not isinstance(core, MLPCore):
        raise InputError(f"bench peer compares MLP controllers; model.controller's core is a {type(core).__name__}")
    config, ppo = module.env_config, module.ppo
    torch.manual_seed(seed)
    ours = make_env(config, split="train", seed=seed)
    body = get_body(config.body)
    clips = [clip.qpos for clip in load_clips(config.clips, body=body.key, split="train")]
    plain = peer.make_peer_env(body.load_model(), clips, config.substeps, config.num_envs, seed)
    our_actions = torch.rand(steps, *ours.action_spec.shape, dtype=ours.action_spec.dtype)
    peer_actions = torch.stack([plain.action_spec.rand() for _ in range(steps)])
    recipe = peer.PeerPPO(plain, ppo, core.hidden_sizes, core.activation)
    recipe.iteration()  # warm-up, untimed

    def env_rate(env, actions, stepping) -> float:
        td = env.reset()
        with stepping:
            start = time.perf_counter()
            for action in actions:
                td["action"] = action
                _, td = env.step_and_maybe_reset(td)
            return len(actions) * config.num_envs / (time.perf_counter() - start)

    def our_train_rate() -> float:
        return bench_train(copy.deepcopy(module), iterations=iterations + 1, accelerator="cpu", evaluation=False)[
            "train_env_steps_per_s"
        ]

    def peer_train_rate() -> float:
        start = time.perf_counter()
        for _ in range(iterations):
            recipe.iteration()
        return iterations * recipe.frames_per_batch / (time.perf_counter() - start)

    runs: dict[str, list[float]] = {"env_ours": [], "env_peer": [], "train_ours": [], "train_peer": []}
    for round_index in range(rounds):
        timings = {
            "env_ours": lambda: env_rate(ours, our_actions, ours.stepping()),
            "env_peer": lambda: env_rate(plain, peer_actions, contextlib.nullcontext()),
            "train_ours": our_train_rate,
            "train_peer": peer_train_rate,
        }
        order = list(timings) if round_index % 2 == 0 else ["env_peer", "env_ours", "train_peer", "train_ours"]
        for name in order:
            runs[name].append(timings[name]())
    recipe.close()
    our_threads = ours.backend.describe().get("threads", 1)
    ours.close()

    def spread(values: list[float]) -> dict:
        return {"min": min(values), "median": statistics.median(values), "max": max(values), "runs": values}

    env = {"ours": spread(runs["env_ours"]), "peer": spread(runs["env_peer"])}
    train = {"ours": spread(runs["train_ours"]), "peer": spread(runs["train_peer"])}
    env_ratio = env["ours"]["median"] / env["peer"]["median"]
    return {
        "benchmark": "peer",
        "body": config.body,
        "backend": config.backend,
        "num_envs": config.num_envs,
        "rounds": rounds,
        "steps": steps,
        "iterations": iterations,
        "peer": "gymnasium SyncVectorEnv of neuromimic.peer.PlainBodyEnv in TorchRL's GymWrapper; TorchRL's PPO recipe",
        "env_steps_per_s": env,
        "train_env_steps_per_s": train,
        "env_ratio": env_ratio,
        "env_ratio_per_thread": env_ratio / our_threads,  # the peer steps on one thread
        "train_ratio": train["ours"]["median"] / train["peer"]["median"],
        "threads": {"ours_physics": our_threads, "peer_physics": 1, "torch": torch.get_num_threads()},
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
