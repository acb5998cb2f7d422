"""test.py: tables, saved SR images, comparison figures, JSON, several models, the bicubic mode and user errors."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.model_files.model_file import save_model
from torch_sr.cli.test import main, model_labels
from torch_sr.comparison_figure import GAP, PANEL_WIDTH, _fit, comparison_figure
from torch_sr.data.catalogue import resolve_images
from torch_sr.data.datasets import SREvalDataset
from torch_sr.data.imresize import imresize
from torch_sr.metrics.inputs import to_uint8


def tiny_rrdb(tmp_path_factory, name, scale, seed):
    torch.manual_seed(seed)
    model = RRDBNet(scale_factor=scale, rrdb_channels=8, growth_channels=4, num_basic_blocks=1, num_dense_blocks=1)
    return save_model(model, tmp_path_factory.mktemp("models") / name)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny_rrdb(tmp_path_factory, "tiny_x4.pth", 4, 0)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    return tiny_rrdb(tmp_path_factory, "other_x4.pth", 4, 1)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate([(48, 52), (40, 40)]):
        small = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.BICUBIC).save(tmp_path / f"pic{k}.png")
    return tmp_path


def run_json(capsys, argv):
    assert main([*argv, "--json", "-"]) == 0
    return json.loads(capsys.readouterr().out)


def test_model_on_a_folder_saves_images_figures_and_json(tiny_model, folder, tmp_path, capsys):
    out = tmp_path / "results"
    code = main([str(tiny_model), "-d", str(folder), "-o", str(out), "-s", "1", "--json", str(out / "r.json"),
                 "--tile", "16", "--device", "cpu"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    name = folder.name
    assert f"{name} x4: PSNR (dB) / SSIM on Y (BT.601), 4 px shaved, 2 images" in printed
    assert "bicubic PSNR" in printed and "pic0" in printed and "mean" in printed
    sr = np.asarray(Image.open(out / name / "pic0.png"))
    assert sr.shape == (48, 52, 3)
    figures = sorted((out / name).glob("*_comparison.png"))
    assert len(figures) == 1
    fig = np.asarray(Image.open(figures[0]))
    assert fig.shape[1] > 4 * 300  # four panels: LR | bicubic | SR | HR
    result = json.loads((out / "r.json").read_text())
    res = result["results"][0]
    assert result["scale"] == 4 and res["channel"] == "y" and res["crop_border"] == 4
    assert {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim"} <= set(res["mean"])
    assert [im["name"] for im in res["images"]] == ["pic0", "pic1"]
    best = max(res["images"], key=lambda im: im["psnr"] - im["bicubic_psnr"])["name"]
    assert figures[0].name == f"{best}_comparison.png"  # the image the model improves most over bicubic


def test_tiling_does_not_change_scores(tiny_model, folder, capsys):
    whole = run_json(capsys, [str(tiny_model), "-d", str(folder), "--tile", "none"])
    tiled = run_json(capsys, [str(tiny_model), "-d", str(folder), "--tile", "16"])
    assert whole["results"][0]["mean"]["psnr"] == pytest.approx(tiled["results"][0]["mean"]["psnr"], abs=0.01)


def test_tta_scores_the_self_ensemble(tiny_model, folder, tmp_path, capsys):
    plain = run_json(capsys, [str(tiny_model), "-d", str(folder)])
    ensembled = run_json(capsys, [str(tiny_model), "-d", str(folder), "--tta"])
    assert plain["tta"] is False and ensembled["tta"] is True
    means = plain["results"][0]["mean"], ensembled["results"][0]["mean"]
    assert means[0]["bicubic_psnr"] == means[1]["bicubic_psnr"] and means[0]["psnr"] != means[1]["psnr"]
    assert main([str(tiny_model), "-d", str(folder), "--tta", "--tile", "none", "-o", str(tmp_path / "out")]) == 0
    assert "x8 self-ensemble (--tta)" in capsys.readouterr().out
    # The saved SR image is the mean of the 8 flipped/transposed outputs, mapped back.
    from torch_sr.model_files.model_file import load_model

    model = load_model(tiny_model).eval()
    lr = SREvalDataset(resolve_images(str(folder), "test", None, download=False), 4, cache=False)[0]["lr"][None]
    outs = []
    with torch.no_grad():
        for t in (False, True):
            x = lr.transpose(-2, -1) if t else lr
            for dims in ((), (-1,), (-2,), (-2, -1)):
                y = model(x.flip(dims)).flip(dims)
                outs.append(y.transpose(-2, -1) if t else y)
    expected = to_uint8(torch.stack(outs).mean(0)[0].clamp(0, 1)).permute(1, 2, 0).numpy().astype(int)
    saved = np.asarray(Image.open(tmp_path / "out" / folder.name / "pic0.png")).astype(int)
    assert np.abs(saved - expected).max() <= 1


def test_rgb_and_crop_border_options(tiny_model, folder, capsys):
    res = run_json(capsys, [str(tiny_model), "-d", str(folder), "--rgb", "--crop-border", "0"])["results"][0]
    assert res["channel"] == "rgb" and res["crop_border"] == 0
    y = run_json(capsys, [str(tiny_model), "-d", str(folder)])["results"][0]
    assert res["mean"]["psnr"] != y["mean"]["psnr"]


def test_bicubic_only_needs_no_model(folder, tmp_path, capsys):
    data = run_json(capsys, ["--bicubic", "--scale", "2", "-d", str(folder)])
    res = data["results"][0]
    assert data["model"] is None and res["scale"] == 2 and res["crop_border"] == 2
    assert set(res["mean"]) == {"bicubic_psnr", "bicubic_ssim"}
    assert main(["--bicubic", "-d", str(folder), "-s", "1", "-o", str(tmp_path / "o")]) == 0
    assert len(list((tmp_path / "o" / folder.name).glob("*_comparison.png"))) == 1


def test_set5_from_shared_data(tiny_model, shared_data, capsys):
    data = run_json(capsys, [str(tiny_model), "-d", "set5", "--data-root", str(shared_data), "--no-download"])
    res = data["results"][0]
    assert res["dataset"] == "Set5" and len(res["images"]) == 5
    assert res["mean"]["bicubic_psnr"] == pytest.approx(28.42, abs=0.02)
    assert res["mean"]["psnr"] < res["mean"]["bicubic_psnr"]  # an untrained model is worse than bicubic


def test_two_models_side_by_side(tiny_model, other_model, folder, tmp_path, capsys):
    out, name = tmp_path / "results", folder.name
    alone = [run_json(capsys, [str(m), "-d", str(folder)])["results"][0] for m in (tiny_model, other_model)]
    code = main([str(tiny_model), str(other_model), "-d", str(folder), "-o", str(out), "-s", "1",
                 "--json", str(out / "r.json")])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    head = printed.splitlines()[1].split()
    assert head == ["image", "bicubic", "PSNR", "bicubic", "SSIM", "tiny_x4", "PSNR", "tiny_x4", "SSIM",
                    "other_x4", "PSNR", "other_x4", "SSIM"]  # fmt: skip
    mean_row = next(line for line in printed.splitlines() if line.startswith("mean")).split()
    assert mean_row[1:] == [f"{alone[0]['mean']['bicubic_psnr']:.2f}", f"{alone[0]['mean']['bicubic_ssim']:.4f}",
                            f"{alone[0]['mean']['psnr']:.2f}", f"{alone[0]['mean']['ssim']:.4f}",
                            f"{alone[1]['mean']['psnr']:.2f}", f"{alone[1]['mean']['ssim']:.4f}"]  # fmt: skip
    data = json.loads((out / "r.json").read_text())
    assert data["scale"] == 4 and "results" not in data
    assert [m["label"] for m in data["models"]] == ["tiny_x4", "other_x4"]
    assert [m["model"] for m in data["models"]] == [str(tiny_model), str(other_model)]
    for entry, solo in zip(data["models"], alone):  # each model scores exactly as when scored alone
        res = entry["results"][0]
        assert res["mean"] == solo["mean"] and res["images"] == solo["images"]
    assert alone[0]["mean"]["psnr"] != alone[1]["mean"]["psnr"]

    # SR images per model; one figure LR | bicubic | tiny_x4 | other_x4 | HR of the first model's best gain.
    sr = {label: np.asarray(Image.open(out / name / label / "pic0.png")) for label in ("tiny_x4", "other_x4")}
    assert sr["tiny_x4"].shape == sr["other_x4"].shape == (48, 52, 3)
    assert not (out / name / "pic0.png").exists()
    figures = sorted((out / name).glob("*_comparison.png"))
    images = alone[0]["images"]
    best = max(range(len(images)), key=lambda i: images[i]["psnr"] - images[i]["bicubic_psnr"])
    assert [f.name for f in figures] == [f"{images[best]['name']}_comparison.png"]
    fig = np.asarray(Image.open(figures[0]))
    assert fig.shape[1] == 5 * PANEL_WIDTH + 6 * GAP
    item = SREvalDataset(resolve_images(str(folder), "test", None, download=False), 4)[best]
    lr, hr = to_uint8(item["lr"]), to_uint8(item["hr"])
    im = [solo["images"][best] for solo in alone]
    panels = [("LR (nearest)", lr),
              (f"bicubic {im[0]['bicubic_psnr']:.2f} dB / {im[0]['bicubic_ssim']:.4f}", imresize(lr, 4))]  # fmt: skip
    for label, scores in zip(("tiny_x4", "other_x4"), im):
        saved = np.array(Image.open(out / name / label / f"{item['name']}.png"))
        panels.append((f"{label} {scores['psnr']:.2f} dB / {scores['ssim']:.4f}", torch.from_numpy(saved).permute(2, 0, 1)))
    panels.append(("HR", hr))
    expected = comparison_figure(panels, tuple(hr.shape[-2:]), f"{name} {item['name']} x4")
    assert np.array_equal(fig, expected)  # the panels, in order, are those images with those scores


def test_single_model_figure_has_four_panels(tiny_model, folder, tmp_path):
    assert main([str(tiny_model), "-d", str(folder), "-s", "2", "-o", str(tmp_path / "o")]) == 0
    figures = list((tmp_path / "o" / folder.name).glob("*_comparison.png"))
    assert len(figures) == 2
    assert all(np.asarray(Image.open(f)).shape[1] == 4 * PANEL_WIDTH + 5 * GAP for f in figures)


def test_same_file_twice_gets_distinct_labels(tiny_model, folder, capsys):
    data = run_json(capsys, [str(tiny_model), str(tiny_model), "-d", str(folder)])
    first, second = data["models"]
    assert (first["label"], second["label"]) == ("tiny_x4-1", "tiny_x4-2")
    assert first["results"] == [{**second["results"][0], "seconds": first["results"][0]["seconds"]}]


def test_long_panel_labels_are_shortened_in_the_middle():
    from PIL import ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label = "1657192860_RRDB_ESRGAN_x4_final_model_interpolated_alpha0.8 27.12 dB / 0.8123"
    short = _fit(draw, label, PANEL_WIDTH - 2)
    assert draw.textlength(label) > PANEL_WIDTH and draw.textlength(short) <= PANEL_WIDTH - 2
    assert short.startswith("1657192860_RRDB") and short.endswith("27.12 dB / 0.8123") and "..." in short
    assert _fit(draw, "tiny_x4 25.00 dB / 0.7000", PANEL_WIDTH - 2) == "tiny_x4 25.00 dB / 0.7000"


def test_model_labels_are_stems_made_distinct():
    assert model_labels(["a/psnr.pth", "b/gan.safetensors"]) == ["psnr", "gan"]
    assert model_labels(["a/net.pth", "b/net.pth", "c/other.pth"]) == ["net-1", "net-2", "other"]
    labels = model_labels(["a/net.pth", "b/net.pth", "net-1.pth"])
    assert len(set(labels)) == 3 and labels[2] == "net-1"


def test_models_of_different_scales_are_refused(tiny_model, tmp_path_factory, folder, capsys):
    x2 = tiny_rrdb(tmp_path_factory, "tiny_x2.pth", 2, 0)
    assert main([str(tiny_model), str(x2), "-d", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"{tiny_model} x4" in err and f"{x2} x2" in err and "different" in err
    assert main([str(tiny_model), str(tiny_model), "--scale", "2", "-d", str(folder)]) == 2
    assert "does not match the models" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--bicubic", "MODEL"], "drop MODEL"),
        ([], "give a MODEL"),
        (["MODEL", "--scale", "2"], "does not match"),
        (["MODEL", "-d", "no_such_dataset"], "unknown dataset 'no_such_dataset'"),
        (["MODEL", "--tile", "-3"], "--tile"),
        (["MODEL", "--tile", "8"], "use 16 or more pixels"),
        (["--bicubic", "--scale", "0", "-d", "FOLDER"], "--scale must be at least 1"),
        (["MODEL", "--tile", "0"], "use 16 or more pixels"),
        (["--bicubic", "--tta"], "--tta averages a model's outputs"),
        (["MODEL", "--lpips", "-d", "FOLDER"], "lpips"),
        (["missing.pth"], "not found"),
    ],
)
def test_user_errors_exit_2_with_a_message(tiny_model, folder, capsys, monkeypatch, argv, message):
    monkeypatch.setitem(__import__("sys").modules, "lpips", None)
    from torch_sr.metrics.lpips import lpips_model

    lpips_model.cache_clear()
    argv = [str(tiny_model) if a == "MODEL" else str(folder) if a == "FOLDER" else a for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["-o", "PARENT"], ["-o", "PARENT", "-s", "1"], ["-s", "1"]])
def test_outputs_never_land_among_the_images_being_scored(tiny_model, tmp_path, capsys, monkeypatch, flags):
    """`-d hr -o .` would write SR images over the HR ones (and the next run would score them);
    figures (`-s`, into test_results/<dataset>/ without -o) would join the set."""
    hr = tmp_path / "test_results" / "hr"
    hr.mkdir(parents=True)
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(hr / "a.png")
    monkeypatch.chdir(tmp_path)
    argv = [str(tiny_model), "-d", str(hr), *[str(hr.parent) if a == "PARENT" else a for a in flags]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds images being scored" in err and err.count("\n") == 1
    assert [p.name for p in hr.iterdir()] == ["a.png"] and np.array(Image.open(hr / "a.png")).max() == 90


def test_outputs_never_land_in_a_dataset_folder_whose_split_holds_the_images(tiny_model, tmp_path, capsys):
    """`-d mydata` scores mydata/test/*.png when mydata/ has no image of its own: writing into mydata/
    would make the next run score the outputs instead."""
    split = tmp_path / "mydata" / "test"
    split.mkdir(parents=True)
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(split / "a.png")
    assert main([str(tiny_model), "-d", str(tmp_path / "mydata"), "-o", str(tmp_path)]) == 2
    assert "holds images being scored" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mydata").iterdir()] == ["test"]


@pytest.mark.parametrize("target, message", [("FOLDER", "is a folder"), ("FOLDER/pic0.png/x.json", "which is a file")])
def test_an_unwritable_json_target_is_refused_before_scoring(tiny_model, folder, capsys, target, message):
    target = target.replace("FOLDER", str(folder))
    assert main([str(tiny_model), "-d", str(folder), "--json", target]) == 2
    err = capsys.readouterr()
    assert f"--json {target}: " in err.err and message in err.err and err.out == ""  # refused before any work


def test_an_image_too_small_to_score_is_named(folder, capsys):
    Image.fromarray(np.zeros((8, 28, 3), np.uint8)).save(folder / "sliver.png")  # 4 px shaved leave nothing
    assert main(["--bicubic", "-d", str(folder)]) == 2
    assert "error: sliver: crop_border=4 leaves nothing of a 28x8 image; remove the image" in capsys.readouterr().err


def test_two_datasets_of_one_name_are_refused(folder, tmp_path_factory, capsys):
    other = tmp_path_factory.mktemp("elsewhere") / folder.name
    other.mkdir()
    Image.open(next(folder.glob("*.png"))).save(other / "a.png")
    assert main(["--bicubic", "-d", f"{folder},{other}", "-o", str(tmp_path_factory.mktemp("out"))]) == 2
    assert f"are both named {folder.name!r}" in capsys.readouterr().err


def test_tile_words_in_any_case_and_json_of_non_finite_means(tiny_model, folder, capsys):
    from torch_sr.evaluation import EvalResult, ImageScore

    for word in ("AUTO", "None"):
        assert main([str(tiny_model), "-d", str(folder), "--tile", word, "--json", "-"]) == 0
        capsys.readouterr()
    result = EvalResult("x", 4, 4, True)
    result.images = [ImageScore("a", psnr=float("nan"), ssim=1.0), ImageScore("b", psnr=float("-inf"), ssim=1.0)]
    assert [image["psnr"] for image in result.to_dict()["images"]] == ["nan", "-inf"]


def test_a_missing_lpips_package_is_said_before_any_work_and_alone(tiny_model, folder, capsys, monkeypatch):
    import torch_sr.evaluation
    from torch_sr.metrics.lpips import lpips_model

    monkeypatch.setitem(__import__("sys").modules, "lpips", None)
    lpips_model.cache_clear()
    monkeypatch.setattr(torch_sr.evaluation, "evaluate", lambda *a, **k: pytest.fail("scored before finding lpips missing"))
    assert main([str(tiny_model), "-d", str(folder), "--lpips"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: LPIPS needs the optional package 'lpips'") and "crop-border" not in err
    lpips_model.cache_clear()
