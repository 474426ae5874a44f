"""Afferent models: spindle Ia/II with fusimotor drive, tendon organ Ib, delays, noise."""

from __future__ import annotations

import pytest
import torch

from neuromimic.proprioception import (
    AfferentConfig,
    Afferents,
    MuscleSpindle,
    TendonOrgan,
)

DT = 1e-3
IA, II, IB = 0, 1, 2


def full(value: float, shape=(1, 1)) -> torch.Tensor:
    return torch.full(shape, float(value), dtype=torch.float64)


def ramp_response(velocity: float, gamma_static: float = 70.0, gamma_dynamic: float = 70.0, seconds: float = 0.2):
    """Ia and II (pps) at the end of a ramp stretch from L0 at ``velocity`` (L0/s)."""
    spindle = MuscleSpindle(DT)
    length, gs, gd = full(1.0), full(gamma_static), full(gamma_dynamic)
    state = spindle.initial_state(length, gs, gd)
    for _ in range(round(seconds / DT)):
        length = length + velocity * DT
        ia, ii, state = spindle(state, length, full(velocity), gs, gd)
    return ia.item(), ii.item()


def held_rates(length: float, gamma_static: float = 70.0, gamma_dynamic: float = 70.0, seconds: float = 1.0):
    """Ia and II (pps) after holding ``length`` (L0) for ``seconds``, starting from L0."""
    spindle = MuscleSpindle(DT)
    gs, gd = full(gamma_static), full(gamma_dynamic)
    state = spindle.initial_state(full(1.0), gs, gd)
    for _ in range(round(seconds / DT)):
        ia, ii, state = spindle(state, full(length), full(0.0), gs, gd)
    return ia.item(), ii.item()


def test_ia_rises_with_stretch_velocity():
    rates = [ramp_response(v)[0] for v in (0.05, 0.2, 0.5, 1.0)]
    assert rates == sorted(rates) and rates[-1] > rates[0] + 50, rates


def test_ia_rises_with_dynamic_gamma():
    """Dynamic fusimotor drive raises the Ia response to the same ramp (bag1)."""
    rates = [ramp_response(0.5, gamma_static=0.0, gamma_dynamic=g)[0] for g in (0.0, 50.0, 100.0, 150.0)]
    assert rates == sorted(rates) and rates[-1] > rates[0] + 30, rates


def test_ii_rises_with_length_and_static_gamma():
    by_length = [held_rates(length)[1] for length in (0.95, 1.0, 1.05, 1.1)]
    assert by_length == sorted(by_length) and by_length[-1] > by_length[0] + 10, by_length
    by_gamma = [held_rates(1.0, gamma_static=g, gamma_dynamic=0.0)[1] for g in (0.0, 50.0, 100.0, 150.0)]
    assert by_gamma == sorted(by_gamma) and by_gamma[-1] > by_gamma[0] + 10, by_gamma


def test_spindle_settles_where_initial_state_says():
    """`initial_state` is the fixed point of a still spindle: holding changes nothing."""
    spindle = MuscleSpindle(DT)
    length, gs, gd = full(1.05, (4, 3)), full(60.0, (4, 3)), full(90.0, (4, 3))
    state = spindle.initial_state(length, gs, gd)
    settled = spindle.rates(state, length)
    for _ in range(500):
        ia, ii, state = spindle(state, length, torch.zeros_like(length), gs, gd)
    torch.testing.assert_close(ia, settled[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(ii, settled[1], atol=1e-6, rtol=0)


def test_spindle_is_stable_at_coarse_steps_and_differentiable():
    """Fast stretches and releases (2 L0/s) at a 5 ms step stay finite; the rates have
    gradients w.r.t. the fascicle length."""
    dt = 5e-3
    spindle = MuscleSpindle(dt)
    gs = gd = full(70.0, (2, 9))
    start = torch.linspace(0.8, 1.2, 18, dtype=torch.float64).reshape(2, 9).requires_grad_(True)
    state = spindle.initial_state(start.detach(), gs, gd)
    length, total = start, 0.0
    for k in range(40):
        velocity = torch.full_like(start, 2.0 if k < 20 else -2.0)
        length = length + velocity * dt
        ia, ii, state = spindle(state, length, velocity, gs, gd)
        assert torch.isfinite(ia).all() and torch.isfinite(ii).all()
        total = total + ia.sum() + ii.sum()
    total.backward()
    assert torch.isfinite(start.grad).all() and (start.grad != 0).all()


def test_tendon_organ_rises_with_force():
    organ = TendonOrgan(DT)
    settled = [organ.drive(full(f)).item() for f in (0.0, 0.1, 0.3, 0.6, 1.0)]
    assert settled == sorted(settled) and settled[0] == 0.0 and settled[-1] > 100
    # Held forces settle at the logarithmic drive; a step of force overshoots first.
    state = organ.initial_state(full(0.1))
    rates = []
    for _ in range(3000):
        ib, state = organ(state, full(0.5))
        rates.append(ib.item())
    assert max(rates) > settled[-2] * 0.9 and rates[0] > organ.drive(full(0.5)).item()
    assert rates[-1] == pytest.approx(organ.drive(full(0.5)).item(), rel=0.05)


@pytest.mark.parametrize("delays_ms", [(0.0, 0.0, 0.0), (7.0, 12.0, 3.0)])
def test_delays_shift_responses_by_the_stated_time_exactly(delays_ms):
    """Each class arrives exactly its delay later than with no delay, bitwise."""
    reference = Afferents(AfferentConfig(dt_ms=1.0, ia_delay_ms=0.0, ii_delay_ms=0.0, ib_delay_ms=0.0))
    delayed = Afferents(
        AfferentConfig(dt_ms=1.0, ia_delay_ms=delays_ms[0], ii_delay_ms=delays_ms[1], ib_delay_ms=delays_ms[2])
    )
    shape = (2, 3)
    length, force, gamma = full(1.0, shape), full(0.2, shape), full(70.0, shape)
    states = [afferents.initial_state(length, force, gamma, gamma) for afferents in (reference, delayed)]
    outputs = ([], [])
    for t in range(60):
        velocity = full(0.5 if 10 <= t < 30 else 0.0, shape)
        length = length + velocity * DT
        force = full(0.2 + 0.3 * (t >= 20), shape)
        for k, afferents in enumerate((reference, delayed)):
            rates, states[k] = afferents(states[k], length, velocity, force, gamma, gamma)
            outputs[k].append(rates)
    undelayed, shifted = torch.stack(outputs[0]), torch.stack(outputs[1])  # [T, B, 3, M]
    initial = reference.initial_state(full(1.0, shape), full(0.2, shape), gamma, gamma)
    settled = reference.settled_rates(initial, full(1.0, shape), full(0.2, shape))
    for k, delay_ms in enumerate(delays_ms):
        d = round(delay_ms)
        assert torch.equal(shifted[d:, :, k], undelayed[: 60 - d, :, k])
        assert torch.equal(shifted[:d, :, k], settled[None, :, k].expand(d, -1, -1))
    assert not torch.equal(undelayed[10], undelayed[30])  # the stimulus did move the rates


def test_delay_not_a_multiple_of_the_step_is_an_error():
    with pytest.raises(ValueError, match="ia delay|Ia delay"):
        Afferents(AfferentConfig(dt_ms=2.0, ia_delay_ms=5.0))


def test_noise_has_the_stated_std_and_is_seeded():
    config = AfferentConfig(noise_pps=5.0, ia_delay_ms=0, ii_delay_ms=0, ib_delay_ms=0)
    afferents, quiet = Afferents(config), Afferents(AfferentConfig(ia_delay_ms=0, ii_delay_ms=0, ib_delay_ms=0))
    shape = (256, 9)
    length, force, gamma = full(1.0, shape), full(0.3, shape), full(70.0, shape)
    state = afferents.initial_state(length, force, gamma, gamma)

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return afferents(state, length, torch.zeros(shape, dtype=torch.float64), force, gamma, gamma, generator)[0]

    clean = quiet(state, length, torch.zeros(shape, dtype=torch.float64), force, gamma, gamma)[0]
    noisy = draw(0)
    assert torch.equal(noisy, draw(0)) and not torch.equal(noisy, draw(1))
    assert (noisy >= 0).all()
    assert (noisy - clean)[:, IA].std().item() == pytest.approx(5.0, rel=0.1)


def test_advance_interpolates_between_control_steps():
    """`advance` over 10 ms equals ten 1 ms steps along the straight line."""
    afferents = Afferents(AfferentConfig())
    shape = (3, 4)
    l0, l1 = full(1.0, shape), full(1.01, shape)
    f0, f1 = full(0.1, shape), full(0.2, shape)
    gamma = full(70.0, shape)
    state = afferents.initial_state(l0, f0, gamma, gamma)
    rates, _ = afferents.advance(state, l0, l1, f0, f1, 0.01, gamma, gamma)
    manual = state
    for k in range(1, 11):
        expected, manual = afferents(
            manual, torch.lerp(l0, l1, k / 10), (l1 - l0) / 0.01, torch.lerp(f0, f1, k / 10), gamma, gamma
        )
    torch.testing.assert_close(rates, expected)
    with pytest.raises(ValueError, match="whole number"):
        afferents.advance(state, l0, l1, f0, f1, 0.0105, gamma, gamma)


def _full_model_sine_response(lengths, gamma_static, gamma_dynamic, freq, amplitude, settle, seconds, fs=10_000):
    """Reference: the paper's spindle WITH its intrafusal mass (M = 0.0002), explicit Euler at
    10 kHz, vectorised over conditions [N]. Returns 8 Hz Ia and II gains (pps / L0) and
    mean rates (pps), each [N]."""
    import numpy as np

    from neuromimic.proprioception import spindle as sp

    fibres = (sp.BAG1, sp.BAG2, sp.CHAIN)
    drive = np.stack([gamma_dynamic, gamma_static, gamma_static], axis=-1)  # [N, 3]
    half = np.array([f.fusimotor_half for f in fibres])
    activation = drive**2 / (drive**2 + half**2)
    beta = np.array([f.beta0 for f in fibres]) + np.array([f.beta_dynamic + f.beta_static for f in fibres]) * activation
    force = np.array([f.gamma_dynamic + f.gamma_static for f in fibres]) * activation
    pri = np.array([f.primary_gain for f in fibres])
    sec = np.array([f.secondary_gain for f in fibres])
    base = np.asarray(lengths)[:, None]
    tension = (sp.K_PR * (base - sp.L0_SR - sp.L0_PR) + force) / (1 + sp.K_PR / sp.K_SR)
    tension_rate = np.zeros_like(tension)
    dt, w = 1.0 / fs, 2 * np.pi * freq
    ia_out, ii_out, times = [], [], []
    for k in range(round((settle + seconds) * fs)):
        t = (k + 1) * dt - settle
        on = t > 0
        length = base + on * amplitude * np.sin(w * t)
        velocity = on * amplitude * w * np.cos(w * t)
        acceleration = -on * amplitude * w * w * np.sin(w * t)
        polar_velocity = velocity - tension_rate / sp.K_SR
        c = np.where(polar_velocity >= 0, sp.LENGTHENING_C, sp.SHORTENING_C)
        stretch = length - sp.L0_SR - tension / sp.K_SR
        second = (sp.K_SR / 0.0002) * (
            c
            * beta
            * np.sign(polar_velocity)
            * np.abs(polar_velocity) ** sp.DAMPING_POWER
            * (stretch - sp.DAMPING_LENGTH_R)
            + sp.K_PR * (stretch - sp.L0_PR)
            + 0.0002 * acceleration
            + force
            - tension
        )
        tension_rate = tension_rate + second * dt
        tension = tension + tension_rate * dt
        if t > seconds / 2 and k % 10 == 9:
            sensory = tension / sp.K_SR - (sp.LN_SR - sp.L0_SR)
            primary = np.maximum(pri * sensory, 0)
            bag1, static = primary[:, 0], primary[:, 1] + primary[:, 2]
            ia_out.append(np.maximum(bag1, static) + sp.OCCLUSION_S * np.minimum(bag1, static))
            polar = length - tension / sp.K_SR - sp.L0_SR - sp.LN_PR
            secondary = sec * (
                sp.SECONDARY_X * sp.SECONDARY_LENGTH / sp.L0_SR * sensory
                + (1 - sp.SECONDARY_X) * sp.SECONDARY_LENGTH / sp.L0_PR * polar
            )
            ii_out.append(np.maximum(secondary, 0)[:, 1:].sum(-1))
            times.append(t)
    phase = np.exp(-1j * w * np.array(times))[:, None]
    rates = [np.array(out) for out in (ia_out, ii_out)]
    gains = [2 * np.abs((r * phase).mean(0)) / amplitude for r in rates]
    return gains, [r.mean(0) for r in rates]


def test_massless_spindle_matches_the_full_model_with_mass():
    """The massless, implicitly integrated spindle against the paper's model with its
    intrafusal mass at 10 kHz: 8 Hz sensitivities within 6 %, mean rates within 2 pps."""
    import numpy as np

    lengths = np.array([0.9, 0.9, 1.1, 1.1])
    gamma_static = np.array([0.0, 140.0, 0.0, 140.0])
    gamma_dynamic = np.full(4, 70.0)
    freq, amplitude, settle, seconds = 8.0, 0.002, 1.0, 1.0
    (ref_ia_gain, ref_ii_gain), (ref_ia, ref_ii) = _full_model_sine_response(
        lengths, gamma_static, gamma_dynamic, freq, amplitude, settle, seconds
    )
    spindle = MuscleSpindle(DT)
    gs, gd = torch.as_tensor(gamma_static)[:, None], torch.as_tensor(gamma_dynamic)[:, None]
    base = torch.as_tensor(lengths)[:, None]
    state = spindle.initial_state(base, gs, gd)
    w, rates, times = 2 * np.pi * freq, [], []
    for k in range(round(seconds / DT)):
        t = (k + 1) * DT
        length = base + amplitude * np.sin(w * t)
        ia, ii, state = spindle(state, length, torch.full_like(base, amplitude * w * np.cos(w * t)), gs, gd)
        if t > seconds / 2:
            rates.append(torch.cat([ia, ii], dim=-1).numpy())
            times.append(t)
    rates = np.array(rates)  # [T, N, 2]
    gains = 2 * np.abs((rates * np.exp(-1j * w * np.array(times))[:, None, None]).mean(0)) / amplitude
    np.testing.assert_allclose(gains[:, 0], ref_ia_gain, rtol=0.06)
    np.testing.assert_allclose(gains[:, 1][ref_ii_gain > 0], ref_ii_gain[ref_ii_gain > 0], rtol=0.06)
    np.testing.assert_allclose(rates.mean(0)[:, 0], ref_ia, atol=2.0)
    np.testing.assert_allclose(rates.mean(0)[:, 1], ref_ii, atol=2.0)
