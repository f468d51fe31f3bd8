"""The non-LLM jobs `--measure` runs on the GPU: diffusers, ultralytics and transformers Whisper models.

Each model is built from its config with random weights (nothing is downloaded) and runs the job's own work: a
diffusers pipeline call (text encoders, UNet loop with classifier-free guidance, VAE decode, safety checker), a LoRA
training step as diffusers' train_text_to_image_lora scripts take it, an ultralytics training step as its trainer
takes it (AMP, GradScaler, gradient clipping, EMA; then, unless `yolo_val` is off, one validation batch of the EMA
model at twice the batch, as the trainer runs after each epoch: `validate_yolo`), or Whisper beam search through
transformers. `measure.measure`
reads the peaks around these calls; each returns its notes and the median step time (None for inference).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from onecard.core.errors import ConfigError
from onecard.core.extras import require
from onecard.fit import diffusion, whisper, yolo
from onecard.fit.job import FitJob

__all__ = ["check", "run_diffusion", "run_yolo", "validate_yolo", "run_whisper"]

# Where the jobs run: measure.measure has checked that torch sees a CUDA GPU (the unit tests run them on "cpu").
DEVICE = "cuda"


def check(job: FitJob, family: str) -> None:
    """Refuse early, before any GPU work, a job `--measure` cannot run here, naming the extra or the flag to use.

    Raises:
        ConfigError: Whisper on a runtime other than transformers.
        MissingExtraError: the capability's libraries are not installed.
    """
    if family == "whisper":
        runtime = "faster-whisper" if job.runtime == "auto" else job.runtime
        if runtime != "transformers":
            raise ConfigError(f"--measure runs Whisper through transformers, not {runtime}",
                              "add --runtime transformers to measure the model (CTranslate2 and openai-whisper keep "
                              "their own allocators), or record a real `onecard asr` run on the GPU")
        require("transformers", "asr")
        if job.job == "train" and job.method != "full":
            require("peft", "asr")
    elif family == "diffusion":
        require("diffusers", "diffuse")
        require("transformers", "diffuse")
        if job.job == "train":
            require("peft", "diffuse")
    elif family == "yolo":
        require("ultralytics", "detect")


def _timed(step: Any, steps: int, torch: Any) -> float:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        getattr(torch, DEVICE).synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:] or times)


def _dtype(job: FitJob, torch: Any) -> Any:
    return torch.float32 if job.quant in ("fp32", "float32") else torch.float16


def _diffusion_models(arch: diffusion.DiffusionArch, dtype: Any, vae_dtype: Any, torch: Any) -> dict[str, Any]:
    diffusers = require("diffusers", "diffuse")
    transformers = require("transformers", "diffuse")
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    with torch.device(DEVICE):
        parts = {
            "unet": diffusers.UNet2DConditionModel(**diffusion.UNET_CONFIGS[arch.key]).to(dtype),
            "vae": diffusers.AutoencoderKL(**diffusion.VAE_CONFIG, force_upcast=arch.vae_force_upcast).to(vae_dtype),
        }
        texts = diffusion.TEXT_CONFIGS[arch.key]
        parts["text_encoder"] = transformers.CLIPTextModel(transformers.CLIPTextConfig(**texts[0])).to(dtype)
        if len(texts) > 1:
            parts["text_encoder_2"] = transformers.CLIPTextModelWithProjection(
                transformers.CLIPTextConfig(**texts[1])).to(dtype)
        if arch.safety_checker:
            config = transformers.CLIPConfig(vision_config=diffusion.SAFETY_CHECKER_VISION, projection_dim=768)
            parts["safety_checker"] = StableDiffusionSafetyChecker(config).to(dtype)
    for module in parts.values():
        module.requires_grad_(False)
    return parts


def _attention(unet: Any, job: FitJob) -> str:
    from diffusers.models.attention_processor import AttnProcessor

    if job.attention == "eager":
        unet.set_attn_processor(AttnProcessor())
        return "default attention (scores materialised)"
    if job.attention == "slicing":
        unet.set_attention_slice("auto")
        return "attention slicing"
    if job.attention == "xformers":
        require("xformers", "diffuse")
        unet.enable_xformers_memory_efficient_attention()
        return "xformers attention"
    return "PyTorch SDPA attention"


def _text_embeds(parts: dict[str, Any], batch: int, torch: Any) -> dict[str, Any]:
    """The text encoders' phase, run on random token ids (the pipelines' tokenizers need vocab files)."""
    ids = torch.randint(0, 49408, (2 * batch, 77), device=DEVICE)  # prompt + negative prompt (CFG)
    with torch.no_grad():  # not inference_mode: training feeds these to the autograd graph
        out = parts["text_encoder"](ids, output_hidden_states=True)
        if "text_encoder_2" not in parts:
            embeds = out.last_hidden_state
            return {"prompt_embeds": embeds[:batch].clone(), "negative_prompt_embeds": embeds[batch:].clone()}
        out2 = parts["text_encoder_2"](ids, output_hidden_states=True)
        embeds = torch.cat([out.hidden_states[-2], out2.hidden_states[-2]], dim=-1)
        pooled = out2.text_embeds
    return {"prompt_embeds": embeds[:batch].clone(), "negative_prompt_embeds": embeds[batch:].clone(),
            "pooled_prompt_embeds": pooled[:batch].clone(), "negative_pooled_prompt_embeds": pooled[batch:].clone()}


def run_diffusion(job: FitJob, arch: diffusion.DiffusionArch, steps: int, torch: Any) -> tuple[list[str], float | None]:
    """One pipeline call (`job.job == "infer"`) or `steps` LoRA training steps of `arch` on random weights."""
    dtype = _dtype(job, torch) if job.job == "infer" else torch.float16
    # Inference loads the VAE in the pipeline's dtype and the pipeline upcasts a force_upcast VAE before decoding;
    # the SDXL LoRA script keeps that VAE in fp32 throughout.
    vae_dtype = torch.float32 if job.job == "train" and arch.vae_force_upcast else dtype
    parts = _diffusion_models(arch, dtype, vae_dtype, torch)
    notes = [f"{arch.key} built from its config.json values with random weights (diffusers), {str(dtype)[6:]}",
             _attention(parts["unet"], job)]
    px = job.resolution or arch.native_px
    if job.job == "train":
        return notes, _train_diffusion(job, arch, parts, px, steps, torch, notes)
    diffusers = require("diffusers", "diffuse")
    transformers = require("transformers", "diffuse")
    embeds = _text_embeds(parts, job.batch, torch)
    cls = diffusers.StableDiffusionXLPipeline if arch.key == "sdxl" else diffusers.StableDiffusionPipeline
    extra = ({"text_encoder_2": parts["text_encoder_2"], "tokenizer_2": None} if arch.key == "sdxl" else
             {"safety_checker": parts.get("safety_checker"), "feature_extractor": transformers.CLIPImageProcessor(),
              "requires_safety_checker": False})
    pipe = cls(vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=None, unet=parts["unet"],
               scheduler=diffusers.DDIMScheduler(), **extra)
    if job.vae_slicing:
        pipe.vae.enable_slicing()
    if job.vae_tiling:
        pipe.vae.enable_tiling()
    if job.offload == "model":
        pipe.enable_model_cpu_offload()
    elif job.offload == "sequential":
        pipe.enable_sequential_cpu_offload()
    pipe(**embeds, height=px, width=px, num_inference_steps=max(2, steps), output_type="pil")
    notes.append(f"one pipeline call: text encoders, {max(2, steps)} UNet steps at batch {2 * job.batch} (CFG), "
                 f"VAE decode of {job.batch} image(s) at {px}px"
                 + (", safety checker" if "safety_checker" in parts else "") + f", offload {job.offload}")
    return notes, None


def _train_diffusion(job: FitJob, arch: diffusion.DiffusionArch, parts: dict[str, Any], px: int, steps: int,
                     torch: Any, notes: list[str]) -> float:
    """diffusers examples/text_to_image/train_text_to_image_lora(_sdxl).py, one micro-batch per step."""
    peft = require("peft", "diffuse")
    unet, vae = parts["unet"], parts["vae"]
    unet.add_adapter(peft.LoraConfig(r=job.lora_rank, lora_alpha=job.lora_rank, init_lora_weights="gaussian",
                                     target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()  # --mixed_precision fp16: the scripts cast the trainable LoRA params to fp32
    if job.grad_ckpt:
        unet.enable_gradient_checkpointing()
    if job.cached_latents:
        del parts["vae"]
    optimizer = (require("bitsandbytes", "diffuse").optim.AdamW8bit(params, lr=1e-4) if "8bit" in job.optimizer
                 else torch.optim.AdamW(params, lr=1e-4))
    scaler = torch.amp.GradScaler(DEVICE)
    b, side = job.batch, px // 8
    embeds = _text_embeds(parts, b, torch)

    def step() -> None:
        if job.cached_latents:
            latents = torch.randn(b, 4, side, side, device=DEVICE, dtype=torch.float16)
        else:
            with torch.no_grad():
                images = torch.randn(b, 3, px, px, device=DEVICE, dtype=vae.dtype)
                latents = vae.encode(images).latent_dist.sample().to(torch.float16)
        noise = torch.randn_like(latents)
        added = ({"text_embeds": embeds["pooled_prompt_embeds"],
                  "time_ids": torch.randn(b, 6, device=DEVICE, dtype=torch.float16)} if arch.key == "sdxl" else None)
        with torch.autocast(DEVICE, dtype=torch.float16):
            pred = unet(latents + noise, torch.randint(0, 1000, (b,), device=DEVICE),
                        encoder_hidden_states=embeds["prompt_embeds"], added_cond_kwargs=added).sample
            loss = torch.nn.functional.mse_loss(pred.float(), noise.float())
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    step_s = _timed(step, steps, torch)
    notes.append(f"{steps} LoRA training steps (r={job.lora_rank} on attention q/k/v/out, fp32 adapters, fp16 "
                 f"autocast, {type(optimizer).__name__}), batch {b} at {px}px, gradient checkpointing "
                 f"{'on' if job.grad_ckpt else 'off'}, " + ("cached latents" if job.cached_latents else "VAE encode"))
    return step_s


def _tensors(out: Any) -> list[Any]:
    """Every tensor in a model's output (a tensor, or lists, tuples and dicts of them, by ultralytics release)."""
    if isinstance(out, dict):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    return [out] if hasattr(out, "requires_grad") else []


def _labels(job: FitJob) -> list[int]:
    """Labels per synthetic image, as the job plans them: the first image holds the most in a mosaic (the target
    assignment pads every image to it), the others the mean, rounded."""
    most = job.max_labels if job.max_labels is not None else math.ceil(4 * job.labels_per_image)
    return [most] + [round(job.labels_per_image)] * (job.batch - 1)


def _yolo_batch(task: str, labels: list[int], size: int, nc: int, torch: Any) -> dict[str, Any]:
    """A synthetic batch as ultralytics' dataloader collates it (normalised xywh boxes, per-image mask indices),
    with `labels[i]` objects in image i."""
    b, n = len(labels), sum(labels)
    if task == "classify":
        return {"img": torch.rand(b, 3, size, size, device=DEVICE), "cls": torch.randint(0, nc, (b,), device=DEVICE)}
    xy, wh = torch.rand(n, 2) * 0.5 + 0.25, torch.rand(n, 2) * 0.25 + 0.05
    batch = {"img": torch.rand(b, 3, size, size, device=DEVICE), "cls": torch.randint(0, nc, (n, 1)).float(),
             "batch_idx": torch.arange(b).repeat_interleave(torch.tensor(labels)).float(),
             "bboxes": torch.cat([xy, wh], 1)}
    if task == "segment":  # overlap_mask=True: one (H/4, W/4) map per image holding each object's index
        batch["masks"] = torch.stack([torch.randint(0, k + 1, (size // 4, size // 4)) for k in labels]).float()
    if task == "pose":
        kpts = torch.rand(n, *yolo.KPT_SHAPE)
        kpts[..., 2] = 1.0
        batch["keypoints"] = kpts
    return batch


def run_yolo(job: FitJob, arch: yolo.YoloArch, steps: int, torch: Any) -> tuple[list[str], float | None]:
    """`steps` training steps as ultralytics' trainer takes them, or one batched predict forward."""
    require("ultralytics", "detect")
    from ultralytics.cfg import get_cfg
    from ultralytics.nn import tasks
    from ultralytics.utils.torch_utils import ModelEMA

    cls = {"detect": tasks.DetectionModel, "segment": tasks.SegmentationModel, "pose": tasks.PoseModel,
           "classify": tasks.ClassificationModel}[arch.task]
    nc = yolo.DEFAULT_NC[arch.task]
    model = cls(f"{arch.key}.yaml", nc=nc, verbose=False).to(DEVICE)  # the yaml ships with ultralytics
    model.args = get_cfg()  # default hyperparameters: the loss reads box/cls/dfl gains from them
    notes = [f"{arch.key} built from ultralytics' {arch.key}.yaml with random weights, nc={nc}"]
    if job.job == "infer":
        half = job.quant in ("auto", "fp16")
        model = (model.half() if half else model).eval()
        with torch.inference_mode():
            model(torch.rand(job.batch, 3, job.imgsz, job.imgsz, device=DEVICE,
                             dtype=torch.float16 if half else torch.float32))
        notes.append(f"one predict forward, batch {job.batch} at {job.imgsz}px, {'fp16' if half else 'fp32'}")
        return notes, None
    model.train()
    ema_of: Any = ModelEMA  # untyped in ultralytics: mypy sees it only where ultralytics is installed (CI)
    ema = ema_of(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = (torch.optim.AdamW(params, lr=1e-3) if job.optimizer == "adamw"
                 else torch.optim.SGD(params, lr=0.01, momentum=0.937, nesterov=True))
    scaler = torch.amp.GradScaler(DEVICE, enabled=job.amp)

    labels = _labels(job)

    def step() -> None:
        batch = _yolo_batch(arch.task, labels, job.imgsz, nc, torch)
        with torch.autocast(DEVICE, enabled=job.amp):
            if job.yolo_loss:
                loss = model(batch)[0].sum()
            else:  # as AutoBatch's profile: forward and backward of the outputs, no loss
                loss = sum(t.float().sum() for t in _tensors(model(batch["img"])))
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        ema.update(model)

    step_s = _timed(step, steps, torch)
    notes.append(f"{steps} training steps, batch {job.batch} at {job.imgsz}px, {'AMP' if job.amp else 'fp32'}, "
                 f"{type(optimizer).__name__}, EMA; synthetic images with {labels[0]} objects in the first and "
                 f"{labels[-1]} in each other" + ("" if job.yolo_loss else ", no loss (yolo_loss off)")
                 + " (no dataloader)")
    if job.yolo_val:
        optimizer.zero_grad(set_to_none=True)
        kept = validate_yolo(arch.task, ema.ema, labels * 2, job.imgsz, nc, job.amp, torch)
        notes.append(f"then one validation batch of the EMA model at batch {2 * job.batch} (preprocess, forward and "
                     f"loss, NMS{' and masks' if arch.task == 'segment' else ''}, metrics; class biases zeroed so NMS "
                     f"keeps up to max_det boxes, as an early model does: {kept:.0f} kept per image)"
                     if arch.task != "classify" else f"then one validation forward at batch {2 * job.batch}")
    else:
        notes.append("no validation pass (yolo_val off)")
    return notes, step_s


def yolo_val_batch(task: str, labels: list[int], size: int, nc: int, torch: Any) -> dict[str, Any]:
    """A validation batch as ultralytics' val dataloader collates it: uint8 images and the letterbox metadata."""
    batch = _yolo_batch(task, labels, size, nc, torch)
    batch["img"] = (batch["img"] * 255).to(torch.uint8)
    n = len(labels)
    batch |= {"ori_shape": [(size, size)] * n, "ratio_pad": [((1.0, 1.0), (0.0, 0.0))] * n,
              "resized_shape": [(size, size)] * n, "im_file": [f"im{i}.jpg" for i in range(n)]}
    return batch


def validate_yolo(task: str, model: Any, labels: list[int], size: int, nc: int, amp: bool, torch: Any,
                  phase: Callable[[str], None] = lambda name: None) -> float:
    """One validation batch (`labels`: objects per image) through the installed ultralytics' own validator as its
    trainer runs it (BaseValidator.__call__ with training=True, under inference mode): preprocess, forward and loss
    under 16-bit autocast, postprocess (NMS; masks for segmentation), update_metrics. The class biases of `model` are
    zeroed first, so every anchor clears conf 0.001 and NMS keeps max_det boxes, as an early model does. `phase` is
    called after the forward, the loss and the metrics (the benchmark reads each phase's peak). Returns the boxes kept
    per image (0 for classification, whose validation is a forward)."""
    low = torch.float16 if DEVICE == "cuda" else torch.bfloat16  # bf16 stands in for CUDA's fp16 on the CPU
    if task == "classify":
        with torch.inference_mode(), torch.autocast(DEVICE, dtype=low, enabled=amp):
            model(torch.rand(len(labels), 3, size, size, device=DEVICE))
        phase("forward")
        return 0.0
    from ultralytics.models import yolo as uyolo

    with torch.no_grad():
        for seq in model.model[-1].cv3:  # class logits 0 -> sigmoid 0.5 at every anchor
            torch.nn.init.zeros_(seq[-1].bias)
    # Any: ultralytics declares these attributes None until its own __call__ sets them (mypy sees it where installed)
    validator: Any = {"detect": uyolo.detect.DetectionValidator, "segment": uyolo.segment.SegmentationValidator,
                      "pose": uyolo.pose.PoseValidator}[task](args={"task": task, "plots": False})
    validator.training, validator.device, validator.data = True, torch.device(DEVICE), {"names": model.names}
    validator.args.quantize = 16 if amp else 32  # what BaseValidator.__call__ sets with AMP on
    if task == "pose":
        validator.data["kpt_shape"] = list(yolo.KPT_SHAPE)
    validator.init_metrics(model)
    validator.seen = 0
    batch = yolo_val_batch(task, labels, size, nc, torch)
    with torch.inference_mode():
        batch = validator.preprocess(batch)
        if amp:
            batch["img"] = batch["img"].to(low)  # the fp16 image of a 16-bit validation: no cast copy per conv
        with torch.autocast(DEVICE, dtype=low, enabled=amp):
            preds = model(batch["img"])
            phase("forward")
            model.loss(batch, preds)
            phase("loss")
        preds = validator.postprocess(preds)
        validator.update_metrics(preds, batch)
        phase("NMS and masks")
        kept = [len(p["conf"] if isinstance(p, dict) else p) for p in preds]  # a dict or a box tensor, by release
        return float(sum(kept) / len(kept))


def run_whisper(job: FitJob, arch: whisper.WhisperArch, steps: int, torch: Any) -> tuple[list[str], float | None]:
    """Beam search over `batch` 30 s windows, or `steps` fine-tuning steps, with transformers' Whisper."""
    check(job, "whisper")
    transformers = require("transformers", "asr")
    d = arch.d
    config = transformers.WhisperConfig(
        vocab_size=arch.vocab, num_mel_bins=arch.n_mels, d_model=d, encoder_layers=arch.enc_layers,
        decoder_layers=arch.dec_layers, encoder_attention_heads=arch.heads, decoder_attention_heads=arch.heads,
        encoder_ffn_dim=arch.ffn or 4 * d, decoder_ffn_dim=arch.ffn or 4 * d, max_source_positions=whisper.N_AUDIO_CTX,
        max_target_positions=whisper.N_TEXT_CTX, decoder_start_token_id=50258, pad_token_id=50257,
        eos_token_id=50257)
    lora = job.job == "train" and job.method != "full"
    dtype = torch.float32 if job.job == "train" and not lora else _dtype(job, torch)
    with torch.device(DEVICE):
        model = transformers.WhisperForConditionalGeneration(config).to(dtype)
    notes = [f"whisper {arch.key} built from its dimensions with random weights (transformers), {str(dtype)[6:]}"]
    features = torch.randn(job.batch, arch.n_mels, 2 * whisper.N_AUDIO_CTX, device=DEVICE, dtype=dtype)
    if job.job == "infer":
        new = whisper.N_TEXT_CTX // 2
        with torch.inference_mode():  # GenerationMixin's beam search: Whisper's generate wants a tokenizer's ids
            transformers.GenerationMixin.generate(model, input_features=features, num_beams=job.beam,
                                                  max_new_tokens=new, min_new_tokens=new, do_sample=False)
        notes.append(f"beam search {job.beam} over {job.batch} window(s), {new} new tokens each (forced)")
        return notes, None
    if lora:  # as the estimator: LoRA on q and v of every attention, frozen 16-bit weights
        peft = require("peft", "asr")
        model = peft.get_peft_model(model, peft.LoraConfig(r=job.lora_rank, lora_alpha=2 * job.lora_rank,
                                                           target_modules=["q_proj", "v_proj"]))
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    if job.grad_ckpt:  # transformers >= 5 renamed it
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable({"use_reentrant": False})
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    labels = torch.randint(0, arch.vocab, (job.batch, whisper.N_TEXT_CTX), device=DEVICE)

    def step() -> None:
        with torch.autocast(DEVICE, dtype=torch.float16):
            loss = model(input_features=features, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step_s = _timed(step, steps, torch)
    notes.append(f"{steps} fine-tuning steps ({f'LoRA r={job.lora_rank} on q,v' if lora else 'full, fp32 weights'}, "
                 f"fp16 autocast, AdamW), batch {job.batch} x 30 s, labels of {whisper.N_TEXT_CTX} tokens")
    return notes, step_s
