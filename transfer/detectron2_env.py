"""Which detectron2 this environment has, and the choices that follow from it.

tools/install_detectron2.py either keeps a detectron2 that was already there (a user's compiled build) or
installs FAIR's Python code with a stand-in for the compiled extension (tools/detectron2_stand_in/_C.py).
"""
import importlib


def has_compiled_ops():
    """True when detectron2's compiled extension (detectron2._C) is importable and is not the stand-in."""
    try:
        compiled = importlib.import_module("detectron2._C")
    except ImportError:
        return False
    return not getattr(compiled, "IS_STAND_IN", False)


def coco_evaluator(dataset_name, output_dir=None, **kwargs):
    """detectron2's COCOEvaluator; its C++ COCOeval only with a compiled build, else pycocotools' COCOeval."""
    from detectron2.evaluation import COCOEvaluator

    kwargs.setdefault("use_fast_impl", has_compiled_ops())
    return COCOEvaluator(dataset_name, output_dir=output_dir, **kwargs)
