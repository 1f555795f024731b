"""Checkpoints in every published layout sslt_core/checkpoints.py reads, built from torchvision ResNets."""
import torch
import torchvision


def random_resnet(builder=torchvision.models.resnet50, seed=0):
    """A ResNet with random weights and random BN statistics, so that a wrong mapping shows in the features."""
    torch.manual_seed(seed)
    model = builder()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return model.state_dict()


def prefixed(state_dict, prefix):
    return {prefix + k: v for k, v in state_dict.items()}


def head(prefix, *shapes):
    return {f"{prefix}{i}.weight": torch.randn(shape) for i, shape in enumerate(shapes)}


def make_layout(source, encoder, other):
    """The checkpoint object `source` would save, with `encoder` as the online/query/teacher encoder and
    `other` as the momentum / student encoder where the layout has one."""
    no_fc = {k: v for k, v in encoder.items() if not k.startswith("fc.")}
    if source == "torchvision":
        return dict(encoder)
    if source == "moco":
        return {"epoch": 200, "arch": "resnet50", "optimizer": {},
                "state_dict": {**prefixed(encoder, "module.encoder_q."), **prefixed(other, "module.encoder_k."),
                               "module.queue": torch.randn(128, 16), "module.queue_ptr": torch.zeros(1)}}
    if source == "moco-no-ddp":
        return {"state_dict": {**prefixed(encoder, "encoder_q."), **prefixed(other, "encoder_k.")}}
    if source == "mocov3":
        return {"state_dict": {**prefixed(no_fc, "module.base_encoder."), **prefixed(other, "module.momentum_encoder."),
                               **head("module.predictor.", (4096, 256), (256, 4096))}}
    if source == "simsiam":
        return {"state_dict": {**prefixed(no_fc, "module.encoder."), **head("module.encoder.fc.", (2048, 2048)),
                               **head("module.predictor.", (512, 2048), (2048, 512))}}
    if source == "swav":
        return {**prefixed(no_fc, "module."), **head("module.projection_head.", (2048, 2048), (128, 2048)),
                "module.prototypes.weight": torch.randn(3000, 128)}
    if source == "dino":
        return {"teacher": {**prefixed(no_fc, "module.backbone."), **head("module.head.mlp.", (2048, 2048))},
                "student": {**prefixed(other, "module.backbone."), **head("module.head.mlp.", (2048, 2048))},
                "epoch": 100}
    if source == "dino-backbone":
        return dict(no_fc)
    if source == "vissl":
        return {"classy_state_dict": {"base_model": {"model": {
            "trunk": prefixed(no_fc, "_feature_blocks."), "heads": head("0.clf.", (1000, 2048))}}}}
    if source == "solo":
        return {"pytorch-lightning_version": "2.1.0", "epoch": 10,
                "state_dict": {**prefixed(no_fc, "backbone."), **prefixed(other, "momentum_backbone."),
                               **head("projector.", (2048, 2048))}}
    if source == "mmselfsup":
        return {"meta": {"epoch": 200}, "state_dict": {**prefixed(no_fc, "backbone."),
                                                       **head("neck.mlp.", (2048, 2048))}}
    if source == "lightly":
        sequential = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
        renamed = {f"backbone.{sequential[k.split('.')[0]]}.{k.split('.', 1)[1]}": v for k, v in no_fc.items()}
        return {**renamed, **head("projection_head.layers.", (2048, 2048))}
    if source == "ours":
        return {"ssl_transfer": {"method": "simsiam", "arch": "resnet50", "epochs": 1}, "encoder": dict(no_fc)}
    raise KeyError(source)


# layout -> the name auto-detection must report
LAYOUTS = {"torchvision": "torchvision", "moco": "moco", "moco-no-ddp": "moco", "mocov3": "mocov3",
           "simsiam": "simsiam", "swav": "swav", "dino": "dino", "dino-backbone": "torchvision", "vissl": "vissl",
           "solo": "solo", "mmselfsup": "mmselfsup", "lightly": "lightly", "ours": "ours"}
