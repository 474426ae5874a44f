"""The closed-loop tremor experiment (tools/tremor_experiment.py): the muscle model's
statics and dynamics, and what must hold for a short run regardless of tuning."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("tremor_experiment", REPO / "tools" / "tremor_experiment.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


te = _load()
ANGLES = torch.tensor(te.ANGLES_DEG, dtype=torch.float64)


def test_tendon_curve_inverts_and_is_continuous():
    muscle = te.Muscle()
    force = torch.linspace(0.0, 1.5, 301, dtype=torch.float64)
    assert torch.allclose(muscle.tendon_force(muscle.tendon_strain(force)), force, atol=1e-12)
    e0 = muscle.tendon_strain_at_peak
    assert muscle.tendon_force(torch.tensor(e0, dtype=torch.float64)).item() == pytest.approx(1.0, abs=0.01)
    toe = 0.609 * e0
    below, above = muscle.tendon_force(torch.tensor([toe - 1e-9, toe + 1e-9], dtype=torch.float64))
    assert above.item() == pytest.approx(below.item(), abs=1e-6)


def test_force_velocity_balance_is_solved():
    """The closed-form fibre velocity satisfies a fL fV(v) + fPE + b v = fT on both branches."""
    muscle = te.Muscle()
    gen = torch.Generator().manual_seed(0)
    activation = torch.rand(200, generator=gen, dtype=torch.float64)
    lf = 0.6 + 0.6 * torch.rand(200, generator=gen, dtype=torch.float64)
    force = 1.5 * torch.rand(200, generator=gen, dtype=torch.float64)
    v = muscle.fibre_velocity(activation, lf, force)
    vmax, af, fe = muscle.vmax_l0_s, muscle.hill_af, muscle.eccentric_max
    k = (fe - 1.0) / (muscle.eccentric_slope_ratio * (1.0 + 1.0 / af) / vmax)
    fv = torch.where(v < 0, (vmax + v) / (vmax - v / af), 1.0 + (fe - 1.0) * v / (v + k))
    balance = activation * muscle.force_length(lf) * fv + muscle.passive_force(lf) + muscle.damping * v
    target = torch.maximum(force, muscle.passive_force(lf))
    assert torch.allclose(balance, target, atol=1e-9)


def test_holds_and_maximum_force():
    muscle, loop = te.Muscle(), te.Loop()
    max_force = muscle.max_force(ANGLES)
    _, activation_max = muscle.hold(ANGLES, max_force)
    assert torch.allclose(activation_max, torch.ones(3, dtype=torch.float64), atol=1e-9)
    lengths = te.hold_lengths(muscle, loop)
    assert torch.all(lengths[1:] > lengths[:-1])  # dorsiflexion lengthens the fascicles
    gammas = te.rule_gammas(muscle, loop)
    assert gammas["constant"] == [loop.gamma_static_pps] * 3
    ld = gammas["length_dependent"]
    assert ld[0] > ld[1] > ld[2] and ld[1] == pytest.approx(loop.gamma_static_pps)


def test_population_stage():
    """The spinal sigmoid inverts, and its Ia gain rises with the tonic Ia rate below the
    inflection (the mechanism by which gamma-static raises the loop gain)."""
    loop = te.Loop()
    y = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    assert torch.allclose(loop.population(loop.population_inverse(y)), y, atol=1e-12)
    ia = torch.linspace(0.0, 150.0, 151, dtype=torch.float64)
    rates = torch.stack([ia, torch.full_like(ia, 30.0), torch.full_like(ia, 80.0)], dim=1)
    net = loop.afferent_input(rates)
    gain = torch.diff(net)
    assert torch.all(gain > 0) and torch.all(torch.diff(gain) > 0)
    # II and Ib enter nearly flat (their normalisations), as in the source model.
    more_ii_ib = torch.stack([ia, torch.full_like(ia, 60.0), torch.full_like(ia, 120.0)], dim=1)
    assert torch.allclose(loop.afferent_input(more_ii_ib), net, atol=0.01)


def test_loop_off_holds_the_drive_and_loop_on_responds_after_the_loop_delay():
    """Ramp-and-hold rows: with the afferent loop off the alpha drive stays at the hold's
    activation though the spindle feels the stretch; with it on the drive first moves one
    loop delay (Ia + efferent, 40 ms) after the ramp onset."""
    muscle, loop, perturbation = te.Muscle(), te.Loop(), te.Perturbation(onset_s=0.2)
    rows = te.build_rows(muscle, loop, trials=1)
    traces = te.simulate(rows, 0.6, muscle, loop, perturbation, seed=1)
    angles = torch.tensor([m["angle"] for m in rows.meta], dtype=torch.float64)
    activation = muscle.hold(angles, loop.target_fraction * muscle.max_force(angles))[1].numpy()
    onset = round(perturbation.onset_s * 1000.0 / te.DT_MS)
    delay = round((loop.ia_delay_ms + loop.efferent_delay_ms) / te.DT_MS)
    for i, m in enumerate(rows.meta):
        if m["kind"] != "reflex":
            continue
        excitation = traces["excitation"][i]
        assert traces["ia_pps"][i, onset : onset + 100].max() > traces["ia_pps"][i, onset - 1] + 10.0  # stretch felt
        np.testing.assert_allclose(excitation[: onset + delay - 1], activation[i], rtol=1e-9)
        if m["loop"]:
            assert excitation[onset + delay + 20] > activation[i] + 0.01, m
        else:
            np.testing.assert_allclose(excitation, activation[i], rtol=1e-9)


@pytest.fixture(scope="module")
def short_run():
    torch.set_num_threads(1)
    return te.run(duration_s=5.0, trials=2, seed=3, sweep_gammas=(0.0, 140.0), sweep_trials=1)


def _numbers(item):
    for value in item.values():
        if isinstance(value, float):
            yield value


def test_short_run_is_finite_and_holds_the_target(short_run):
    conditions = short_run["conditions"]
    assert len(conditions) == 2 * len(te.ANGLES_DEG)
    for c in conditions + short_run["gamma_sweep"]:
        assert all(math.isfinite(v) for v in _numbers(c)), c
        assert c["mean_torque_pct_max"] == pytest.approx(30.0, abs=1.5)
        assert c["tremor_sd_nm"] > 0
        assert c["reflex_amplitude_nm"] > 0  # the Ia loop adds torque to the stretch response
        assert 20.0 < c["reflex_onset_latency_ms"] < 150.0  # after the 40 ms loop delay, plus the muscle's lag
        assert 1.0 <= c["tremor_peak_hz"] <= 20.0
    json.dumps(te.public(short_run))  # the summary is JSON-ready


def test_afferent_loop_amplifies_tremor_where_the_spindle_is_taut(short_run):
    """The afferent loop amplifies the 4-12 Hz force fluctuation at the neutral and
    dorsiflexed angles."""
    for c in short_run["conditions"]:
        if c["angle_deg"] >= 0.0:
            assert c["tremor_sd_nm"] > 1.2 * c["tremor_sd_ia_loop_off_nm"], c


def test_gamma_static_raises_tremor_at_a_fixed_length(short_run):
    """The sweep: at the neutral and dorsiflexed lengths more gamma-static (a higher tonic Ia,
    a steeper point of the spinal sigmoid) gives more tremor."""
    sweep = {(c["angle_deg"], c["gamma_static_pps"]): c for c in short_run["gamma_sweep"]}
    for angle in te.ANGLES_DEG:
        low, high = sweep[(angle, 0.0)], sweep[(angle, 140.0)]
        assert high["mean_ia_pps"] > low["mean_ia_pps"]
        if angle >= 0.0:
            assert high["tremor_sd_nm"] > 2.0 * low["tremor_sd_nm"], (low, high)


def test_same_seed_same_numbers(short_run):
    again = te.run(duration_s=5.0, trials=2, seed=3, sweep_gammas=(0.0, 140.0), sweep_trials=1)
    first = [c["tremor_sd_nm"] for c in short_run["conditions"]]
    second = [c["tremor_sd_nm"] for c in again["conditions"]]
    np.testing.assert_array_equal(first, second)
