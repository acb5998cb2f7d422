"""Deliberate one-line bugs ("mutants") and the test that must fail for each (docs/testing.md).

    python tests/mutants.py                  # every mutant against its catching test
    python tests/mutants.py 3 7              # mutants 3 and 7 (their numbers in the table)
    python tests/mutants.py 3 --tests tests  # mutant 3 against the whole suite (does anything catch it?)
    python tests/mutants.py --list           # the table, nothing run

Each mutant is applied to a scratch copy of the checkout (tracked and untracked files, with
../shared beside it when present), so the working tree is never modified, and pytest runs there.
A mutant is "killed" when the tests fail. `tests/test_mutants.py` checks that every mutant's line
still exists exactly once, so the list cannot silently go stale.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    path: str  # relative to the repository root
    old: str  # text that occurs exactly once in the file
    new: str  # what it becomes
    test: str  # pytest node id that must fail
    added: bool  # True: `test` was written for this mutant; False: the suite already caught it

    def line(self, root: Path = ROOT) -> int:
        text = (root / self.path).read_text(encoding="utf-8")
        return text[: text.index(self.old)].count("\n") + 1


LOOP, SESSION, STATE = "torch_sr/training/loop.py", "torch_sr/training/session.py", "torch_sr/training/state.py"
VALIDATION, EMA, TILING = "torch_sr/training/validation.py", "torch_sr/training/ema.py", "torch_sr/inference/tiling.py"
CONTENT, INPUTS = "torch_sr/losses/content.py", "torch_sr/metrics/inputs.py"
LOOP_TESTS, TRAINER = "tests/test_training_loop.py::", "tests/test_trainer.py::"
RESUME, LOSSES, METRICS = "tests/test_trainer_resume.py::", "tests/test_losses.py::", "tests/test_metrics.py::"
VAL_TESTS, TILING_TESTS = "tests/test_validation.py::", "tests/test_tiling.py::"
DESCRIPTION = "tests/test_generator_description.py::"

MUTANTS = [
    # the training loop (the first two are issue 15's)
    Mutant(LOOP, "schedule.step()", "pass",
           LOOP_TESTS + "test_the_learning_rates_follow_their_schedules_to_lr_times_min_lr_factor", True),
    Mutant(LOOP, "clip = state.stage.section.grad_clip_norm", "clip = None",
           LOOP_TESTS + "test_grad_clip_norm_clips_every_step", True),
    Mutant(LOOP, "state.ema.update(g, state.iteration)", "state.ema.update(g, 0)",
           LOOP_TESTS + "test_the_ema_averages_in_every_iterations_weights_with_the_warmed_up_decay", True),
    Mutant(LOOP, "{k: v / count for k, v in sums.items()}", "{k: v for k, v in sums.items()}",
           LOOP_TESTS + "test_logged_training_losses_are_means_over_the_log_interval", True),
    Mutant(LOOP, "val_interval == 0 or last:", "val_interval == 0:",
           LOOP_TESTS + "test_the_last_iteration_is_validated_whatever_the_interval", True),
    Mutant(SESSION, "out = {name: v / world for", "out = {name: v for",
           LOOP_TESTS + "test_the_losses_agreed_on_are_the_means_over_the_processes", True),
    Mutant(SESSION, "if not math.isfinite(value):", "if math.isnan(value):",
           LOOP_TESTS + "test_a_nan_or_infinite_loss_on_any_process_stops_the_run", True),
    Mutant("torch_sr/training/run.py", "carried = state.evaluated_generator.state_dict()",
           "carried = state.generator.state_dict()", TRAINER + "test_stage_two_starts_from_the_stage_one_model", False),
    Mutant("torch_sr/losses/registry.py", "return lambda sr, hr: total_variation(sr)", "return lambda sr, hr: total_variation(hr)",
           LOSSES + "test_a_stages_image_terms_judge_its_output_against_the_hr_image", True),
    # validation and the best model
    Mutant(VALIDATION, "value > best if", "value < best if",
           LOOP_TESTS + "test_the_best_model_is_the_highest_psnr_then_the_lowest_gan_stage_image_loss", True),
    Mutant(VALIDATION, 'return "image_loss" if adversarial and', 'return "psnr" if adversarial and',
           TRAINER + "test_a_run_writes_named_models_and_safe_loadable_checkpoints", False),
    Mutant(SESSION, "if state.iteration < self.options.best_checkpoint_warmup",
           "if state.iteration <= self.options.best_checkpoint_warmup",
           TRAINER + "test_a_run_writes_named_models_and_safe_loadable_checkpoints", False),
    Mutant(VALIDATION, 'terms["loss"] = sum(weights[t] * v for', 'terms["loss"] = sum(v for',
           VAL_TESTS + "test_the_image_loss_is_weighted_as_in_training", True),
    Mutant(VALIDATION, "result.psnr = sum(psnrs) / len(psnrs) if psnrs", "result.psnr = psnrs[-1] if psnrs",
           VAL_TESTS + "test_the_psnr_is_the_mean_over_the_validation_sets", True),
    # EMA
    Mutant(EMA, "weight = 1.0 - self.decay_at(updates)", "weight = self.decay_at(updates)",
           TRAINER + "test_ema_follows_the_weights_with_its_decay", False),
    Mutant(EMA, "return min(self.decay, (1 + updates)", "return max(self.decay, (1 + updates)",
           TRAINER + "test_ema_follows_the_weights_with_its_decay", False),
    # resume
    Mutant(STATE, 'self.best = dict(t["best"])', "self.best = dict(self.best)",
           LOOP_TESTS + "test_a_resumed_run_keeps_the_best_score_of_the_run_it_continues", True),
    Mutant(STATE, 'for kind in ("optimizers", "schedulers"):', 'for kind in ("optimizers",):',
           RESUME + "test_interrupted_run_resumes_bit_identically", False),
    Mutant("torch_sr/training/checkpointing.py", "key=lambda p: p.stat().st_mtime_ns, reverse=True)", "key=lambda p: p.stat().st_mtime_ns)",
           RESUME + "test_resuming_a_finished_run_trains_nothing", False),
    Mutant("torch_sr/training/resume.py", '"pretraining/num_iterations",', '"pretraining/lr",',
           TRAINER + "test_resuming_with_a_config_that_changes_the_run_names_the_keys", False),
    Mutant("torch_sr/training/run.py", 'purge = t["step_offset"] + t["iteration"] + 1 if t else None', "purge = None",
           LOOP_TESTS + "test_a_run_resumed_from_an_older_checkpoint_replaces_what_was_logged_after_it", True),
    Mutant("torch_sr/training/run.py", '+ t["iteration"] + 1 if t', '+ t["iteration"] if t',  # was the code: a bug
           LOOP_TESTS + "test_a_run_resumed_from_an_older_checkpoint_replaces_what_was_logged_after_it", True),
    # losses
    Mutant("torch_sr/losses/adversarial.py", "_bce(fake - real.mean(), 0.0)) / 2", "_bce(fake - real.mean(), 1.0)) / 2",
           LOSSES + "test_adversarial_losses_by_hand", False),
    Mutant(CONTENT, "(x - target).square() + eps * eps", "(x - target).square() + eps",
           LOSSES + "test_content_losses_by_hand", False),
    Mutant(CONTENT, "return self.base(x, target) + self.y_weight * luma", "return self.base(x, target) + luma",
           LOSSES + "test_y_weight_adds_the_loss_of_the_bt601_luma", False),
    Mutant("torch_sr/losses/perceptual.py", "loss / sum(weights.values()) if self.normalize_loss else loss",
           "loss", LOSSES + "test_perceptual_weights_criterion_and_normalisation", False),
    # metrics
    Mutant("torch_sr/metrics/psnr.py", "10.0 * math.log10", "20.0 * math.log10",
           METRICS + "test_psnr_known_mse", False),
    Mutant(INPUTS, "clamp(0, 1).mul(255).round().to(torch.uint8)", "clamp(0, 1).mul(255).to(torch.uint8)",
           METRICS + "test_float_tensors_are_quantised_like_saved_images", False),
    Mutant(INPUTS, "a, b = a[crop_border:-crop_border, crop_border:-crop_border], b[crop_border:-crop_border, "
           "crop_border:-crop_border]", "a, b = a[crop_border:-crop_border], b[crop_border:-crop_border]",
           METRICS + "test_crop_border_shaves_edges", False),  # rows shaved, columns not
    Mutant(INPUTS, "return (y_to_gray(y) if gray else y)[:, :, None]", "return y[:, :, None]",
           METRICS + "test_grayscale_reference_scored_on_gray_values", False),
    Mutant("torch_sr/metrics/ssim.py", "C2 = (0.03 * 255) ** 2", "C2 = (0.02 * 255) ** 2",
           METRICS + "test_ssim_matches_reference_transcription", False),
    # tiling
    Mutant(TILING, "dtype=torch.float64) + 0.5) / scale + start", "dtype=torch.float64)) / scale + start",
           TILING_TESTS + "test_ramps_are_feathered_and_ignore_tile_edges", False),
    Mutant(TILING, "overlap = max(0, min(overlap, tile // 4))", "overlap = max(0, min(overlap, tile // 2))",
           TILING_TESTS + "test_the_overlap_is_capped_at_a_quarter_of_the_tile", True),
    Mutant(TILING, "else math.ceil(length / core)", "else math.ceil(length / tile)",
           TILING_TESTS + "test_tiles_cover_overlap_align_and_weights_sum_to_one", False),
    Mutant(TILING, "return x.mul(peak).round_().clamp_(0, peak)", "return x.mul(peak).clamp_(0, peak)",
           TILING_TESTS + "test_pointwise_function_is_reproduced_exactly", False),
    Mutant(TILING, 'MEMORY_FRACTION["cpu"] - reserved, free * 0.1)', 'MEMORY_FRACTION["cpu"], free * 0.1)',
           "tests/test_upscaler.py::test_small_tiles_are_batched_when_memory_allows", False),
    Mutant(TILING, "side = max(int(math.sqrt(pixels / images)),", "side = max(int(math.sqrt(pixels)),",
           TILING_TESTS + "test_auto_tile_size_follows_free_memory", False),
    # the generator description and the size limits
    Mutant("torch_sr/inference/upscaler.py", "if self.autocast_dtype == torch.float16 and not info.supports_half:",
           "if self.autocast_dtype == torch.bfloat16 and not info.supports_half:",
           DESCRIPTION + "test_upscaler_keeps_a_half_shy_model_in_float32", True),
    Mutant("torch_sr/archs/registry.py", "rrdb_layouts.infer_hparams, rrdb_layouts.canonical_keys),",
           "rrdb_layouts.infer_hparams),", DESCRIPTION + "test_rrdbnet_reader_renames_the_published_layouts", True),
    Mutant("torch_sr/training/run.py", "_check_network_sizes(todo)", "_check_network_sizes(todo[1:])",
           "tests/test_training_errors.py::test_an_absurd_generator_is_refused_before_any_data_is_read", True),
    Mutant("torch_sr/files.py", "if total > size + INFLATION_SLACK:", "if total > 2 * size + INFLATION_SLACK:",
           "tests/test_model_file_errors.py::test_legacy_storage_bound_is_the_file_size_plus_the_slack", True),
    # bf16 autocast on the CPU
    Mutant("torch_sr/device.py", 'amp_dtype in (None, "bf16") and', 'amp_dtype == "bf16" and',
           TRAINER + "test_autocast_on_the_cpu_trains_in_bfloat16", True),
    Mutant("torch_sr/device.py", "and cpu_has_native_bf16() is not False:", "and cpu_has_native_bf16():",
           "tests/test_upscaler.py::test_bf16_on_cpu_runs_unless_the_cpu_emulates_bfloat16", True),
]


def scratch_copy(dest: Path) -> Path:
    """The checkout's tracked and untracked (not ignored) files under `dest/repo`, ../shared linked beside it."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
        capture_output=True,
    ).stdout.decode().split("\0")
    repo = dest / "repo"
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name)
    if (ROOT.parent / "shared").is_dir():
        (dest / "shared").symlink_to(ROOT.parent / "shared")
    return repo


def run_tests(repo: Path, tests: list[str]) -> tuple[int, str]:
    """pytest's exit status (0 passed, 1 a test failed) and the first failure's summary line.

    The per-test timeout is raised to 15 minutes: on a loaded machine a test may well take more
    than the usual 2, and a timeout must not pass for a caught mutant.
    """
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": str(repo)}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "timeout=900", *tests]
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return done.returncode, failed[0][:300] if failed else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("numbers", nargs="*", type=int, help="mutants to run (1-based; default: all)")
    parser.add_argument("--tests", nargs="+", help="run these tests instead of each mutant's own")
    parser.add_argument("--list", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    chosen = args.numbers or list(range(1, len(MUTANTS) + 1))
    if args.list:
        for k in chosen:
            m = MUTANTS[k - 1]
            print(f"{k:3d} {m.path}:{m.line()}  {m.old!r} -> {m.new!r}  {m.test}")
        return 0
    survived = 0
    with tempfile.TemporaryDirectory(prefix="torch_sr_mutants_") as tmp:
        repo = scratch_copy(Path(tmp))
        for k in chosen:
            m = MUTANTS[k - 1]
            target = repo / m.path
            original = target.read_text(encoding="utf-8")
            assert original.count(m.old) == 1, f"mutant {k}: {m.old!r} is not exactly once in {m.path}"
            target.write_text(original.replace(m.old, m.new), encoding="utf-8")
            start = time.perf_counter()
            rc, failed = run_tests(repo, args.tests or [m.test])
            target.write_text(original, encoding="utf-8")
            verdict = {0: "SURVIVED", 1: "killed"}.get(rc, f"error (pytest exit {rc})")
            survived += rc != 1
            print(f"{k:3d} {verdict:9s} {time.perf_counter() - start:5.0f} s  {m.path}:{m.line()}  "
                  f"{m.old!r} -> {m.new!r}  {failed}", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
