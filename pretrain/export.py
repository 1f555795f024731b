"""The trained encoder as safetensors: tensors and a JSON string, nothing that needs a pickle to read."""
import json

import safetensors.torch

from sslt_core.atomic import write_bytes_atomic


def export_encoder(path, encoder, metadata):
    """A torchvision state dict, metadata {"ssl_transfer": JSON of `metadata`}, written atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    write_bytes_atomic(path, safetensors.torch.save(tensors, metadata={"ssl_transfer": json.dumps(metadata)}))
