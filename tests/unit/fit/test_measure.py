"""--measure: a clear error without a GPU, and real peaks on one."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from onecard.core.errors import OnecardError
from onecard.fit.estimate import GIB
from onecard.fit.job import FitJob

torch = pytest.importorskip("torch", reason="--measure needs torch (pip install 'onecard[tune]')")

from onecard.fit.measure import measure  # noqa: E402

CUDA = torch.cuda.is_available()


@pytest.mark.skipif(CUDA, reason="this machine has a CUDA GPU: the no-GPU error cannot happen here")
def test_without_a_gpu_it_says_so_and_points_to_trace() -> None:
    with pytest.raises(OnecardError) as info:
        measure(FitJob(model="llama-3.1-8b", job="train"))
    assert "NVIDIA GPU" in info.value.what
    assert info.value.fix is not None and "--trace" in info.value.fix


def _tiny() -> object:
    transformers = pytest.importorskip("transformers")
    return transformers.LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU with CUDA")
def test_tiny_model_measures_on_the_gpu() -> None:
    weights = 2 * 1000 * 64 + 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64) + 64  # parameters, bf16 x2 B
    infer = measure(FitJob(model="tiny", job="infer", quant="bf16", ctx=256, new_tokens=16), _tiny())
    assert infer.peak_allocated_gib * GIB >= weights * 2
    assert infer.peak_reserved_gib >= infer.peak_allocated_gib
    assert infer.process_gib is None or infer.process_gib >= infer.peak_reserved_gib
    assert infer.tokens_per_s and infer.tokens_per_s > 0

    pytest.importorskip("peft", reason="LoRA measuring needs peft (pip install 'onecard[tune]')")
    train = measure(FitJob(model="tiny", job="train", method="lora", optimizer="adamw", seq=128, batch=2),
                    _tiny(), steps=2)
    assert train.peak_allocated_gib * GIB >= weights * 2
    assert train.step_s and train.step_s > 0


# Diffusion, YOLO and Whisper: the refusals come before any GPU work, so they are checked here on any machine.

def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(_installed("diffusers"), reason="diffusers is installed: the missing-extra error cannot happen")
def test_diffusion_without_diffusers_names_the_extra() -> None:
    with pytest.raises(OnecardError) as info:
        measure(FitJob(model="sd15", job="infer"))
    assert "diffusers" in info.value.what
    assert info.value.fix is not None and "onecard[diffuse]" in info.value.fix


@pytest.mark.skipif(_installed("ultralytics"), reason="ultralytics is installed: the missing-extra error cannot happen")
def test_yolo_without_ultralytics_names_the_extra() -> None:
    with pytest.raises(OnecardError) as info:
        measure(FitJob(model="yolov8s-seg", job="train"))
    assert info.value.fix is not None and "onecard[detect]" in info.value.fix


@pytest.mark.parametrize("runtime", ["auto", "faster-whisper", "openai-whisper"])
def test_whisper_off_transformers_says_which_runtime_it_measures(runtime: str) -> None:
    with pytest.raises(OnecardError) as info:
        measure(FitJob(model="whisper-large-v3", runtime=runtime))  # type: ignore[arg-type]
    assert "transformers" in info.value.what
    assert info.value.fix is not None and "--runtime transformers" in info.value.fix


def test_gguf_is_refused_before_looking_for_a_gpu() -> None:
    with pytest.raises(OnecardError) as info:
        measure(FitJob(model="llama-3.1-8b", quant="q4_k_m", runtime="llama.cpp"))
    assert "GGUF" in info.value.what


@pytest.mark.skipif(CUDA, reason="this machine has a CUDA GPU: the no-GPU error cannot happen here")
def test_whisper_on_transformers_without_a_gpu_points_to_trace() -> None:
    with pytest.raises(OnecardError) as info:
        measure(FitJob(model="whisper-small", runtime="transformers"))
    assert "NVIDIA GPU" in info.value.what


def _on_cpu(monkeypatch: pytest.MonkeyPatch) -> object:
    from onecard.fit import measure_jobs

    monkeypatch.setattr(measure_jobs, "DEVICE", "cpu")
    return measure_jobs


@pytest.mark.slow
def test_whisper_jobs_run_their_steps_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # The GPU code path, on a 2-layer 32-wide Whisper: beam search and a LoRA step run and say what they ran.
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from onecard.fit import whisper

    jobs = _on_cpu(monkeypatch)
    tiny = whisper.WhisperArch("tiny-test", d=32, enc_layers=1, dec_layers=1, heads=2, vocab=51865)
    notes, step_s = jobs.run_whisper(  # type: ignore[attr-defined]
        FitJob(model="whisper-tiny", runtime="transformers", quant="fp32", beam=2), tiny, 1, torch)
    assert step_s is None and any("beam search 2" in n for n in notes)
    notes, step_s = jobs.run_whisper(  # type: ignore[attr-defined]
        FitJob(model="whisper-tiny", runtime="transformers", job="train", method="lora", lora_rank=4), tiny, 1, torch)
    assert step_s is not None and step_s > 0 and any("LoRA r=4 on q,v" in n for n in notes)


def test_whisper_is_built_with_its_own_feed_forward_width(monkeypatch: pytest.MonkeyPatch) -> None:
    # A non-standard Whisper (ffn 3 x d_model from its config.json) is measured at its own shape, not at 4 x d_model.
    transformers = pytest.importorskip("transformers")
    from onecard.fit import whisper

    jobs = _on_cpu(monkeypatch)
    built: list[object] = []

    def stop(config: object) -> None:
        built.append(config)
        raise RuntimeError("built")

    stub = SimpleNamespace(WhisperConfig=transformers.WhisperConfig, WhisperForConditionalGeneration=stop)
    monkeypatch.setattr(jobs, "require", lambda module, extra: stub)
    odd = whisper.WhisperArch("odd", d=32, enc_layers=1, dec_layers=1, heads=2, vocab=51865, ffn=96)
    with pytest.raises(RuntimeError, match="built"):
        jobs.run_whisper(FitJob(model="whisper-tiny", runtime="transformers"), odd, 1, torch)  # type: ignore[attr-defined]
    config = built[0]
    assert (config.encoder_ffn_dim, config.decoder_ffn_dim) == (96, 96)  # type: ignore[attr-defined]


@pytest.mark.slow
def test_diffusion_jobs_run_their_steps_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # A pipeline call and a LoRA step on 2-level UNet/VAE configs: the diffusers calls --measure makes, minus CUDA.
    pytest.importorskip("diffusers", reason="needs diffusers (pip install 'onecard[diffuse]')")
    from onecard.fit import diffusion

    jobs = _on_cpu(monkeypatch)
    monkeypatch.setitem(diffusion.UNET_CONFIGS, "sd15", dict(
        sample_size=8, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, attention_head_dim=4,
        norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")))
    monkeypatch.setattr(diffusion, "VAE_CONFIG", dict(
        diffusion.VAE_CONFIG, block_out_channels=[8, 16], down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2, norm_num_groups=8, layers_per_block=1, sample_size=64))
    small = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                 max_position_embeddings=77, projection_dim=32)
    monkeypatch.setitem(diffusion.TEXT_CONFIGS, "sd15", [small])
    monkeypatch.setattr(diffusion, "SAFETY_CHECKER_VISION", dict(hidden_size=32, intermediate_size=64,
                        num_hidden_layers=1, num_attention_heads=2, patch_size=14, image_size=224))
    sd15 = diffusion.CATALOG["sd15"]
    notes, _ = jobs.run_diffusion(  # type: ignore[attr-defined]
        FitJob(model="sd15", quant="fp32", batch=2, resolution=64, vae_slicing=True), sd15, 2, torch)
    assert any("safety checker" in n for n in notes)
    _, step_s = jobs.run_diffusion(  # type: ignore[attr-defined]
        FitJob(model="sd15", job="train", resolution=64, lora_rank=4), sd15, 2, torch)
    assert step_s is not None and step_s > 0


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs an NVIDIA GPU with CUDA")
@pytest.mark.parametrize(
    "job",
    [
        FitJob(model="sd15", job="infer", quant="fp16", batch=2, attention="sdpa"),
        FitJob(model="sd15", job="train", batch=1, lora_rank=4),
        FitJob(model="yolov8n", job="train", batch=4, imgsz=320),
        FitJob(model="yolov8n-seg", job="train", batch=4, imgsz=320),
        FitJob(model="yolov8n-pose", job="train", batch=4, imgsz=320),
        FitJob(model="yolov8n-cls", job="train", batch=8, imgsz=224),
        FitJob(model="whisper-tiny", job="infer", runtime="transformers", beam=5),
        FitJob(model="whisper-tiny", job="train", runtime="transformers", method="lora", batch=2),
    ],
    ids=lambda j: f"{j.model}-{j.job}",
)
def test_other_families_measure_on_the_gpu(job: FitJob) -> None:
    for module, extra in (("diffusers", "diffuse"), ("ultralytics", "detect")):
        if (module == "diffusers" and job.model.startswith("sd")) or (module == "ultralytics" and "yolo" in job.model):
            pytest.importorskip(module, reason=f"needs {module} (pip install 'onecard[{extra}]')")
    measured = measure(job, steps=2)
    assert 0 < measured.peak_allocated_gib <= measured.peak_reserved_gib
    assert measured.process_gib is None or measured.process_gib >= measured.peak_reserved_gib
    assert measured.steps == (2 if job.job == "train" else 1)


def test_yolo_labels_follow_the_job() -> None:
    from onecard.fit import measure_jobs

    assert measure_jobs._labels(FitJob(model="yolov8n", job="train", batch=4, labels_per_image=3.4)) == [14, 3, 3, 3]
    assert measure_jobs._labels(FitJob(model="yolov8n", job="train", batch=2, max_labels=40)) == [40, 7]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["yolov8n", "yolov8n-seg"])
def test_yolo_train_steps_run_on_cpu_with_and_without_the_loss(monkeypatch: pytest.MonkeyPatch, model: str) -> None:
    # ultralytics' step as --measure takes it (AMP off on the CPU), on the job's label counts; without the loss, as
    # AutoBatch's profile runs it.
    pytest.importorskip("ultralytics", reason="needs ultralytics (pip install 'onecard[detect]')")
    from onecard.fit import yolo

    jobs = _on_cpu(monkeypatch)
    for loss in (True, False):  # the AutoBatch profile (no loss) runs no validation either
        job = FitJob(model=model, job="train", batch=2, imgsz=64, amp=False, labels_per_image=2, yolo_loss=loss,
                     yolo_val=loss)
        notes, step_s = jobs.run_yolo(job, yolo.find(model), 1, torch)  # type: ignore[attr-defined]
        assert step_s is not None and step_s > 0
        assert any("8 objects in the first and 2 in each other" in n for n in notes), notes
        assert any("no loss" in n for n in notes) is (not loss)
        # then the trainer's validation batch at twice the batch, through ultralytics' own validator: an early
        # model's NMS keeps boxes at every image
        val = [n for n in notes if "validation batch of the EMA model at batch 4" in n]
        assert bool(val) is loss and any("no validation pass" in n for n in notes) is (not loss), notes
        if loss:
            kept = float(val[0].split(": ")[-1].split(" kept")[0])
            assert kept > 0
