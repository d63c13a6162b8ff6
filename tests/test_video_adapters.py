"""Temporal adapters on a frozen image DiT: identity at initialisation, only adapters train, small."""
import torch

from effdiff.models.dit import DiT, DiTConfig
from effdiff.video.adapters import AdaptedImageDiT, trainable_fraction


def image_dit():
    torch.manual_seed(0)
    net = DiT(DiTConfig(patch_size=1, hidden_size=64, depth=3, num_heads=2, mlp_ratio=2.0, in_channels=4, image_size=7))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return net


def test_adapted_model_starts_as_the_image_model_per_frame():
    img = image_dit()
    net = AdaptedImageDiT(img, bottleneck=16)
    x = torch.randn(2, 4, 5, 7, 7)
    n, y = torch.tensor([300.0, 700.0]), torch.tensor([3, 10])
    out = net(x, n, y)
    ref = torch.stack([img(x[:, :, t], n, y) for t in range(5)], 2)
    assert out.shape == x.shape and torch.allclose(out, ref, atol=1e-5)


def test_only_adapters_train_and_they_mix_frames():
    net = AdaptedImageDiT(image_dit(), bottleneck=16)
    assert trainable_fraction(net) <= 0.25
    for a in net.adapters:
        torch.nn.init.normal_(a.up.weight, std=0.1)
    x = torch.randn(1, 4, 4, 7, 7, requires_grad=True)
    out = net(x, 500.0)
    out[:, :, 0].sum().backward()
    assert x.grad[:, :, 1:].abs().sum() > 0                       # frame 0 now depends on the other frames
    assert all(p.grad is None for p in net.image.parameters())
    assert all(p.grad is not None for p in net.adapters.parameters())


def test_the_video_adapter_arch_wraps_the_zoo_image_dit_on_8x8_latents():
    from effdiff import assets, checkpoint as ckpt
    from effdiff.models import build
    net = build("video-adapter", {"image": "mnist-ldm-dit", "frame_size": 8})
    assert net.image.config.image_size == 8 and net.image.pos_embed.shape[1] == 64
    assert trainable_fraction(net) <= 0.25 and not any(p.requires_grad for p in net.image.parameters())
    tensors, _ = ckpt.load(assets.path("mnist-ldm-dit"), require_sha256=True)
    assert torch.equal(net.image.blocks[0].attn.qkv.weight, tensors["blocks.0.attn.qkv.weight"])   # the zoo's weights
    x, n, y = torch.randn(2, 4, 3, 8, 8), torch.tensor([0.3, 0.8]), torch.tensor([1, 10])
    ref = torch.stack([net.image(x[:, :, t], n, y) for t in range(3)], 2)
    assert torch.allclose(net(x, n, y), ref, atol=1e-5)          # at initialisation: the image model per frame
