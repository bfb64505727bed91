"""Adapters over moving upstreams: each one's calls live in one module here, with the
versions they were tested on (:mod:`.torch_ao` for torch.ao.quantization, :mod:`.torchscript`
for torch.jit)."""
