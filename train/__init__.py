"""LIA training (the official recipe): ``python -m train.run`` / ``torchrun -m train.run``.

Modules: ``config`` (TrainConfig + presets + CLI), ``data`` (pair sampling), ``losses`` (L1, VGG19
pyramid, GAN, R1), ``discriminator`` (StyleGAN2), ``dist`` (torchrun helpers), ``checkpoints``,
``trainer`` (the loop), ``run`` (entry point). Imports ``lia_live.model``; never the reverse.
"""
