"""Every example runs in `--quick` mode and its headline numbers are sane.

Each example is a script that writes its headline numbers to `OUT/NAME.json` (and its
figure to `OUT/NAME.png`); it runs here as a subprocess, as a user would run it. The
checks are what the example claims: the loss went down, the accuracy beats chance and
the stated baseline, the implicit derivative matches finite differences.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest


EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"


def _ridge_hyperparameter(r):
    assert r["val_mse_final"] < r["val_mse_start"]
    assert r["val_mse_final"] < r["val_mse_best_scalar"]
    assert r["test_mse_learned"] < r["test_mse_start"]


def _svm_hyperparameter(r):
    assert r["val_loss_final"] < r["val_loss_start"]
    assert r["hypergradient_fd_error"] < 1e-5
    # The runtime figure: every method timed at every size, implicit and unrolled.
    for key in ("implicit_ms_largest", "unrolled_ms_largest"):
        assert math.isfinite(r[key]) and r[key] > 0


def _optnet_layer(r):
    assert r["train_loss_final"] < 0.5 * r["train_loss_start"]
    assert r["test_loss_final"] < 0.5 * r["test_loss_start"]
    assert r["fd_error"] < 1e-5
    assert r["max_violation"] < 1e-6


def _dictionary_learning(r):
    for method in ("l1_logistic", "l2_logistic", "dictionary_l2", "task_driven"):
        assert 0.5 < r[f"auc_{method}"] <= 1.0  # above chance
        assert 0.0 <= r[f"auc_{method}_std"] < 0.2
    assert r["task_loss_final"] < r["task_loss_start"]
    assert r["auc_task_driven"] > 0.8
    assert r["hypergradient_fd_error"] < 1e-4


def _dataset_distillation(r):
    assert r["test_accuracy"] > 0.5  # ten classes: chance is 0.1
    assert r["outer_loss_final"] < r["outer_loss_start"]
    assert r["hypergradient_fd_error"] < 1e-4
    assert r["implicit_ms"] > 0 and r["unrolled_ms"] > 0


def _molecular_dynamics(r):
    assert r["max_force"] < 1e-6  # relaxed to a stationary point
    assert r["fd_relative_error"] < 1e-4
    assert r["null_space_component"] < 1e-8  # the minimum-norm derivative


def _sparse_models(r):
    # Hypergradient descent reaches the grid search's best validation error (within
    # 5%) for one penalty, and beats it with one penalty per group.
    assert r["lasso_val_mse_hypergradient"] < 1.05 * r["lasso_val_mse_grid"]
    assert r["logistic_val_loss_hypergradient"] < 1.05 * r["logistic_val_loss_grid"]
    assert r["group_val_mse_hypergradient"] < r["group_val_mse_single"]


def _sensitivity_analysis(r):
    assert r["jvp_vjp_max_difference"] < 1e-8
    assert r["fd_error"] < 1e-5


def _implicit_vs_unrolled_error(r):
    # Theorem 1: the implicit Jacobian's error shrinks with the forward solve's.
    assert r["implicit_error_last"] < 1e-3 * r["implicit_error_first"]
    assert r["implicit_error_last"] < 1e-8


def _deep_equilibrium(r):
    assert r["test_accuracy"] > 0.8  # ten classes: chance is 0.1
    assert r["train_loss_final"] < r["train_loss_start"]
    assert r["gradient_fd_error"] < 1e-4


CHECKS = {
    "ridge_hyperparameter": _ridge_hyperparameter,
    "svm_hyperparameter": _svm_hyperparameter,
    "optnet_layer": _optnet_layer,
    "dictionary_learning": _dictionary_learning,
    "dataset_distillation": _dataset_distillation,
    "molecular_dynamics": _molecular_dynamics,
    "sparse_models": _sparse_models,
    "sensitivity_analysis": _sensitivity_analysis,
    "implicit_vs_unrolled_error": _implicit_vs_unrolled_error,
    "deep_equilibrium": _deep_equilibrium,
}


def _present():
    return [name for name in CHECKS if (EXAMPLES / f"{name}.py").exists()]


def test_every_example_is_checked():
    scripts = {path.stem for path in EXAMPLES.glob("*.py")}
    assert scripts == set(_present()), "an example without a check, or vice versa"


@pytest.mark.parametrize("name", _present())
def test_example_runs_quick(name, tmp_path):
    command = [sys.executable, str(EXAMPLES / f"{name}.py"), "--quick"]
    run = subprocess.run(
        [*command, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert (tmp_path / f"{name}.png").stat().st_size > 1000  # a figure was drawn
    assert f"Saved {tmp_path / f'{name}.png'}" in run.stdout
    results = json.loads((tmp_path / f"{name}.json").read_text())
    CHECKS[name](results)
