"""Stand-in for detectron2's compiled extension (`detectron2/_C.*.so`).

tools/install_detectron2.py installs FAIR's detectron2 Python code without its compiled extension when no
compiled detectron2 exists, and puts this file in its place as `detectron2/_C.py`. Everything the toolkit runs
(Faster R-CNN R50-C4, Mask R-CNN R50-FPN) needs no compiled op: torchvision supplies ROIAlign and NMS. What
does need one fails here with an error that names the op and how to get a compiled build:
rotated boxes (`torch.ops.detectron2.*_rotated*`), deformable convolution and the C++ COCO evaluator
(`transfer.detectron2_env.coco_evaluator` falls back to pycocotools' own COCOeval instead).
"""
import torch

IS_STAND_IN = True  # transfer.detectron2_env.has_compiled_ops() reads this

HOW_TO_GET_IT = (
    "this detectron2 was installed without its compiled extension (tools/install_detectron2.py); "
    "build detectron2 from source with a C++/CUDA compiler "
    "(pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git') "
    "and re-run tools/install_detectron2.py, which then keeps that build"
)


class MissingCompiledOpError(AttributeError, RuntimeError):
    """An op of detectron2's compiled extension was used, but only the Python code is installed."""


def _missing(op_name):
    return MissingCompiledOpError(f"detectron2 op '{op_name}' needs the compiled detectron2._C: {HOW_TO_GET_IT}")


def __getattr__(name):
    # deform_conv_forward, COCOevalEvaluateImages, get_compiler_version, ...
    if name.startswith("__"):
        raise AttributeError(name)
    raise _missing(name)


# The rotated-box ops are called as torch.ops.detectron2.<op>; register them so that a call raises the error
# above instead of torch's "no such operator". Schemas follow detectron2/layers/csrc/vision.cpp.
_SCHEMAS = {
    "nms_rotated": "nms_rotated(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "box_iou_rotated": "box_iou_rotated(Tensor boxes1, Tensor boxes2) -> Tensor",
    "roi_align_rotated_forward": "roi_align_rotated_forward(Tensor input, Tensor rois, float spatial_scale, "
    "int pooled_height, int pooled_width, int sampling_ratio) -> Tensor",
    "roi_align_rotated_backward": "roi_align_rotated_backward(Tensor grad, Tensor rois, float spatial_scale, "
    "int pooled_height, int pooled_width, int batch_size, int channels, int height, int width, "
    "int sampling_ratio) -> Tensor",
}


def _raiser(op_name):
    def op(*args, **kwargs):
        raise _missing(op_name)

    return op


_library = torch.library.Library("detectron2", "DEF")
for _name, _schema in _SCHEMAS.items():
    _library.define(_schema)
    _library.impl(_name, _raiser(_name), "CompositeImplicitAutograd")
