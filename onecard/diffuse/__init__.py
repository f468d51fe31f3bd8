"""`onecard diffuse`: a Stable Diffusion LoRA in your style or of your product, built on diffusers + peft.

Modules:
    config  the pydantic configs of each command (`CheckConfig`, `DiffuseConfig`).
    data    the data check (Pillow only): undecodable images, small sizes, duplicates, captions, EXIF rotation;
            and the training set as tensors (images resized and cropped to the resolution, with their captions).
    train   the pure pieces of LoRA training: load a diffusers pipeline folder, add the LoRA to the UNet's
            attention projections, cache latents, one noise-prediction step, save the LoRA in diffusers' layout.
    run     the entry points the CLI and web call: `check`, `train`.
"""
