"""`neuromimic bench env` prints one JSON object with our env's and the bare simulator's speed."""

import json

from neuromimic.cli import main


def test_bench_env_prints_one_json_object(capsys):
    main(["bench", "env", "--num-envs", "4", "--steps", "20"])
    result = json.loads(capsys.readouterr().out)
    assert result["benchmark"] == "env" and result["backend"] == "mujoco"
    assert result["steps_per_s"] > 0 and result["raw_steps_per_s"] > 0
    assert result["raw_per_control_step_steps_per_s"] > 0
    assert result["ratio"] == result["steps_per_s"] / result["raw_steps_per_s"]


def test_bodies_list(capsys):
    main(["bodies", "list"])
    rows = json.loads(capsys.readouterr().out)
    assert {"key": "mouse_forelimb", "dof": 4, "actuators": 9, "muscles": 9} in rows
