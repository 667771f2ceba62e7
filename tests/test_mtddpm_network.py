"""The MT-DDPM network against the authors' SwinVITModel (shared/reference/mtddpm-authors-config.md):
exact parameter counts, where window attention runs (observed by hooks during a forward pass),
the skip wiring, shifted-window behaviour of every wired attention block, and scale-shift time
conditioning."""

from __future__ import annotations

import math

import pytest
import torch
from monai.networks.nets.swin_unetr import compute_mask

from mtddpm.network import MTDDPMNet, NetworkConfig, ResBlock, count_parameters, timestep_embedding
from mtddpm.swin import SwinTransformerBlock, shifted_window_mask, window_partition, window_reverse

# Reference section 2.3: parameters of every encoder and decoder entry, the middle block, the
# timestep MLP and the head, with the notebook's arguments (256 px, base 128).
ENCODER = [1_280, 427_008, 427_008, 147_584, 427_008, 427_008, 147_584, 2_171_528, 590_080,
           2_436_880, 590_080, 8_150_560, 2_359_808, 9_193_504]
DECODER = [12_078_624, 14_438_432, 12_084_256, 13_132_832, 3_814_416, 3_748_624, 3_155_336,
           3_417_480, 771_712, 607_616, 755_200, 607_616, 607_616, 607_616]
PAPER_PARAMETERS = 116_042_570


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _meta_paper_net() -> MTDDPMNet:
    with torch.device("meta"):  # shapes and counts without allocating 116 M parameters
        return MTDDPMNet(NetworkConfig())


def test_paper_network_has_the_authors_parameter_count_block_for_block():
    net = _meta_paper_net()
    assert count_parameters(net) == PAPER_PARAMETERS
    assert [count_parameters(b) for b in net.input_blocks] == ENCODER
    assert [count_parameters(b) for b in net.output_blocks] == DECODER
    assert count_parameters(net.middle_block) == 18_387_008
    assert count_parameters(net.time_embed) == 328_704
    assert count_parameters(net.out) == 2_562
    swin = sum(count_parameters(m) for m in net.modules() if isinstance(m, SwinTransformerBlock))
    assert swin == 59_956_680


def test_paper_preset_is_the_authors_network():
    from mtddpm.model import PRESETS, MTDDPMConfig

    cfg = MTDDPMConfig(**PRESETS["paper"]).network_config()
    assert cfg == NetworkConfig(learn_sigma=True)
    with torch.device("meta"):
        assert count_parameters(MTDDPMNet(cfg)) == PAPER_PARAMETERS


def _swin_sizes(net: MTDDPMNet, x: torch.Tensor) -> dict[str, tuple[int, int, int]]:
    """{module name: (H, W, shift)} for every Swin block that ran during ``net(x, t)``."""
    seen: dict[str, tuple[int, int, int]] = {}
    handles = []
    for name, m in net.named_modules():
        if isinstance(m, SwinTransformerBlock):
            handles.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: seen.__setitem__(name, (inp[0].shape[1], inp[0].shape[2], mod.shift))
            ))
    try:
        net(x, torch.zeros(x.shape[0], device=x.device))
    finally:
        for h in handles:
            h.remove()
    return seen


def test_window_attention_runs_at_64_32_16_8_px_in_a_256_px_forward_pass():
    net = _meta_paper_net()
    seen = _swin_sizes(net, torch.zeros(1, 1, 256, 256, device="meta"))
    sizes = lambda prefix: sorted({h for name, (h, w, _) in seen.items() if name.startswith(prefix)})
    assert sizes("input_blocks") == [8, 16, 32, 64]
    assert sizes("middle_block") == [8]
    assert sizes("output_blocks") == [8, 16, 32, 64]
    assert all(h == w for h, w, _ in seen.values())
    # two Swin blocks per Swin res-block: 4 encoder, 2 middle, 8 decoder res-blocks
    assert len(seen) == 2 * (4 + 2 + 8)
    # each res-block's first block is W-MSA and its second SW-MSA with shift = window / 2
    windows = {64: 4, 32: 8, 16: 8, 8: 4}
    for name, (h, _, shift) in seen.items():
        assert shift == (0 if name.endswith("swin.0") else windows[h] // 2), name


# --- a slim network with the paper's layout (widths / 4), run for real ---------------------------

SLIM = NetworkConfig(base_channels=32, norm_groups=8)


@pytest.fixture(scope="module")
def slim_run():
    torch.manual_seed(0)
    net = MTDDPMNet(SLIM).eval()
    with torch.no_grad():  # non-zero head and zero-initialised convs, so every path carries signal
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d) and not m.weight.abs().sum():
                torch.nn.init.normal_(m.weight, std=0.02)
    enc_out, dec_in = [], []
    hooks = [b.register_forward_hook(lambda m, i, o: enc_out.append(o)) for b in net.input_blocks]
    hooks += [b.register_forward_pre_hook(lambda m, i: dec_in.append(i[0])) for b in net.output_blocks]
    x = torch.randn(1, 1, 256, 256)
    with torch.no_grad():
        seen = _swin_sizes(net, x)
        out = net(x, torch.tensor([500.0]))
    for h in hooks:
        h.remove()
    n = len(net.input_blocks)
    return net, seen, enc_out[n:], dec_in[n:], out  # the second forward pass's records


def test_every_encoder_entry_feeds_the_decoder_entry_that_mirrors_it(slim_run):
    """14 pushes (stem, res-blocks, Downsamples) and 14 pops, last in first out."""
    _, _, enc_out, dec_in, out = slim_run
    assert len(enc_out) == len(dec_in) == 14
    for k, x in enumerate(dec_in):
        skip = enc_out[13 - k]
        assert torch.equal(x[:, -skip.shape[1]:], skip), f"decoder entry {k}"
    assert out.shape == (1, 2, 256, 256)


def test_resampling_is_nearest_plus_conv(slim_run):
    net = slim_run[0]
    down, up = net.input_blocks[3], net.output_blocks[10].up
    x = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        assert torch.allclose(down(x), down.conv(x[:, :, ::2, ::2]), atol=1e-6)
        assert torch.allclose(up(x), up.conv(x.repeat_interleave(2, 2).repeat_interleave(2, 3)), atol=1e-6)


@pytest.mark.parametrize("part", ["input_blocks", "middle_block", "output_blocks"])
def test_every_wired_attention_block_keeps_its_windows(slim_run, part):
    """For every Swin block the network ran, at the size it ran at: the first block of each Swin
    res-block (W-MSA) mixes a token with its own window only; the second (SW-MSA, shift
    window/2) mixes the bottom-right corner token with the shifted window around it but neither
    with the rest of its unshifted window nor, across the cyclic wrap, with the top-left token
    (the attention mask). The expectations come from the block's place, not its attributes."""
    net, seen, *_ = slim_run
    modules = dict(net.named_modules())
    checked = 0
    for name, (h, w, _) in seen.items():
        if not name.startswith(part):
            continue
        block: SwinTransformerBlock = modules[name]
        ws = {64: 4, 32: 8, 16: 8, 8: 4}[h]  # the notebook's windows per map size
        shifted = name.endswith("swin.1")
        g = torch.Generator().manual_seed(checked)
        x = torch.randn(1, h, w, block.norm1.normalized_shape[0], generator=g)
        kick = 3.0 * torch.randn(x.shape[-1], generator=g)  # not constant: LayerNorm would remove it

        def moved(i, j, at=(h - 1, w - 1), x=x, block=block, kick=kick):
            y = x.clone()
            y[0, i, j] += kick
            with torch.no_grad():
                return not torch.allclose(block(y)[0, at[0], at[1]], block(x)[0, at[0], at[1]], atol=1e-5)

        if not shifted:
            assert moved(h - ws, w - ws), f"{name}: W-MSA misses its own window"
            assert not moved(h - ws - 1, w - 1), f"{name}: W-MSA sees the next window"
        else:
            s = ws // 2
            assert moved(h - s, w - s), f"{name}: SW-MSA misses its shifted window"
            assert not moved(h - ws, w - ws), f"{name}: SW-MSA attends like W-MSA (no shift)"
            assert not moved(h - s - 1, w - 1), f"{name}: SW-MSA sees past its shifted window"
            assert not moved(0, 0), f"{name}: SW-MSA attends across the wrap (no mask)"
            assert not moved(h - 1, 0), f"{name}: SW-MSA attends across the wrap (no mask)"
        checked += 1
    assert checked == {"input_blocks": 8, "middle_block": 4, "output_blocks": 16}[part]


def test_time_enters_by_scale_shift_normalisation():
    torch.manual_seed(0)
    for swin in (None, (2, 4, 2)):
        block = ResBlock(16, 32, 64, 8, swin=swin).eval()
        if block.out_conv is not None:
            torch.nn.init.normal_(block.out_conv.weight, std=0.1)
        x, emb = torch.randn(2, 16, 8, 8), torch.randn(2, 64)
        with torch.no_grad():
            h = block.in_conv(torch.nn.functional.silu(block.in_norm(x)))
            scale, shift = block.emb(emb)[:, :, None, None].chunk(2, dim=1)
            h = block.out_norm(h) * (1 + scale) + shift
            if swin is None:
                h = block.out_conv(torch.nn.functional.silu(h))
            else:
                tok = h.permute(0, 2, 3, 1)
                h = block.swin[1](block.swin[0](tok)).permute(0, 3, 1, 2)
            assert torch.allclose(block(x, emb), block.skip(x) + h, atol=1e-5)
            # the time input changes the output (it is not dropped on the way)
            assert not torch.allclose(block(x, emb), block(x, emb.flip(0)), atol=1e-3)


def test_network_time_input_matters_and_shapes(slim_run):
    cfg = NetworkConfig(image_size=32, base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=(1, 1, 1),
                        attention_resolutions=(16, 8), num_heads=(1, 2, 2), window_size=(4, 4, 4), norm_groups=8)
    torch.manual_seed(0)
    net = MTDDPMNet(cfg)
    torch.nn.init.normal_(net.out[-1].weight, std=0.1)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        a, b = net(x, torch.tensor([0.0, 0.0])), net(x, torch.tensor([700.0, 700.0]))
    assert a.shape == (2, 2, 32, 32) and not torch.allclose(a, b, atol=1e-4)
    with pytest.raises(ValueError, match="divisible"):
        MTDDPMNet(NetworkConfig(image_size=24))
    with pytest.raises(ValueError, match="one entry per level"):
        MTDDPMNet(NetworkConfig(num_heads=(4, 4)))


def test_timestep_embedding_is_the_authors_cos_then_sin():
    emb = timestep_embedding(torch.tensor([0.0, 999.0]), 128)
    assert torch.equal(emb[0], torch.cat([torch.ones(64), torch.zeros(64)]))
    k = torch.arange(64, dtype=torch.float64)
    freqs = torch.exp(-math.log(10000.0) * k / 64)
    assert torch.allclose(emb[1].double(), torch.cat([torch.cos(999 * freqs), torch.sin(999 * freqs)]), atol=1e-3)


def test_windows_as_large_as_the_map_are_clamped_and_unshifted():
    cfg = NetworkConfig(image_size=32, base_channels=16, channel_mult=(1, 2, 2, 2), num_res_blocks=(1,) * 4,
                        attention_resolutions=(8, 4), num_heads=(1,) * 4, window_size=(4, 4, 8, 8), norm_groups=8)
    assert cfg.window(2) == (8, 0) and cfg.window(3) == (4, 0)
    net = MTDDPMNet(cfg)
    seen = _swin_sizes(net, torch.zeros(1, 1, 32, 32))
    assert {(h, s) for h, _, s in seen.values()} == {(8, 0), (4, 0)}


# --- the attention layer alone ------------------------------------------------------------------


def test_window_partition_roundtrip():
    x = torch.randn(2, 8, 12, 3)
    w = window_partition(x, 4)
    assert w.shape == (2 * 2 * 3, 16, 3)
    assert torch.equal(window_reverse(w, 4, 8, 12), x)
    assert torch.equal(w[0].view(4, 4, 3), x[0, :4, :4])  # first window: the top-left block, row-major


def test_mask_matches_monai():
    for h, w, ws in ((8, 8, 4), (16, 8, 4), (16, 16, 8)):
        mine = shifted_window_mask(h, w, ws, ws // 2)
        ref = compute_mask([h, w], (ws, ws), (ws // 2, ws // 2), "cpu")  # 0 allowed, -100 masked
        assert torch.equal(mine, ref == 0)


def test_shift_is_undone_exactly():
    # A huge bias on the relative offset (0, 0) makes every token attend to itself only; the
    # output at each position must then be that token's own projection, wherever the roll put it.
    for shift in (0, 2):
        torch.manual_seed(0)
        block = SwinTransformerBlock(8, 2, 4, shift=shift).eval()
        ws = 4
        with torch.no_grad():
            block.attn.relative_position_bias_table.zero_()
            block.attn.relative_position_bias_table[(ws - 1) * (2 * ws - 1) + (ws - 1)] = 1e4
            x = torch.randn(2, 8, 8, 8)
            _, _, v = block.attn.qkv(x).chunk(3, dim=-1)
            assert torch.allclose(block.attention(x), block.attn.proj(v), atol=1e-5)
