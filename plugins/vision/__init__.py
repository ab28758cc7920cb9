"""vision: image classification on CPUs and GPUs.

Datasets (``--dataset NAME``, files from ``--data PATH``):

- ``digits`` (default): scikit-learn's 8x8 handwritten digits, bundled, no download.
- ``imagefolder``: the user's images, one sub-folder per class (optionally inside
  ``train/ val/ test/``); see :mod:`._folder`.
- ``mnist``, ``fashion-mnist`` (IDX files) and ``cifar10`` (binary version); fetch them with
  ``automl datasets download NAME --data PATH`` (checksummed).

Spaces: ``mlp``, ``cnn``, ``resnet`` (ResNet-18/34, small-input stem), ``mobilenet``
(MobileNetV3-Small), and ``resnet_pretrained`` / ``mobilenet_pretrained`` (ImageNet weights
from the local torch cache). Every space shares one training step that applies the searched
augmentation policy and batch mixing (mixup, cutmix) to whole batches on the device
(:mod:`._augment`); they search OneCycle / warm-up cosine schedules, SGD momentum and
Nesterov, and an EMA of the weights; ``mlp`` and ``cnn`` start from known-good configurations.
Metrics: accuracy (default), top-5 accuracy (10 or more classes), macro-F1, balanced accuracy.
Baseline: ``svc``, an RBF SVM on the pixels tuned by cross-validation on train (:mod:`._baseline`).
"""

from __future__ import annotations

from automl import Baseline, Dataset, Option, PluginInfo, SearchSpace, hookimpl, metrics
from automl_plugins.vision import _nets as nets
from automl_plugins.vision._augment import vision_step
from automl_plugins.vision._baseline import fit_svc
from automl_plugins.vision._data import load_digits_bundle
from automl_plugins.vision._folder import load_imagefolder
from automl_plugins.vision._formats import load_cifar10, load_fashion_mnist, load_mnist
from automl_plugins.vision._predict import predict_images
from automl_plugins.vision._spaces import (
    START_CNN,
    START_CNN_AFFINE,
    START_CNN_SGD,
    START_LINEAR,
    START_MLP,
    build_cnn,
    build_linear,
    build_mlp,
    define_cnn,
    define_linear,
    define_mlp,
    train_space,
)

CLS = ("classification",)
VAL = Option("val", float, 0.1, "fraction of the official train set held out for validation")


@hookimpl
def plugin_info() -> PluginInfo:
    return PluginInfo(name="vision", description="Image classification: image folders, MNIST, CIFAR-10; "
                      "linear, MLP, CNN, ResNet, MobileNet", default_dataset="digits", default_space="cnn",
                      default_metric="accuracy", deployment_spaces=("cnn", "mlp", "linear"))


@hookimpl
def register_datasets(register) -> None:
    register(Dataset(name="digits", task="classification", load=load_digits_bundle, predict_new=predict_images,
                     description="scikit-learn's 8x8 handwritten digits: 1,797 images, 10 classes"))
    register(Dataset(name="imagefolder", task="classification", load=load_imagefolder, predict_new=predict_images,
                     needs_path=True,
                     description="your images: DIR/<class>/*.png|jpg, or DIR/train|val|test/<class>/...",
                     options=(Option("size", int, 32, "side in pixels every image is resized to"),
                              Option("stream_above", int, 20000, "stream from disk (DataLoader) above this many "
                                                                 "images"),
                              Option("workers", int, 2, "DataLoader worker processes when streaming"),
                              Option("flip", bool, True, "a horizontal flip keeps the label (flips are then "
                                                         "searched)"))))
    register(Dataset(name="mnist", task="classification", load=load_mnist, predict_new=predict_images,
                     needs_path=True, options=(VAL,),
                     description="MNIST from its IDX files (automl datasets download mnist --data DIR)"))
    register(Dataset(name="fashion-mnist", task="classification", load=load_fashion_mnist, predict_new=predict_images,
                     needs_path=True, options=(VAL,),
                     description="Fashion-MNIST from its IDX files (automl datasets download fashion-mnist --data "
                                 "DIR)"))
    register(Dataset(name="cifar10", task="classification", load=load_cifar10, predict_new=predict_images,
                     needs_path=True, options=(VAL,),
                     description="CIFAR-10, binary version (automl datasets download cifar10 --data DIR)"))


@hookimpl
def register_spaces(register) -> None:
    register(SearchSpace(name="mlp", tasks=CLS, define=define_mlp, build=build_mlp, train=train_space,
                         step=vision_step, description="multi-layer perceptron on the flattened image",
                         starts=(START_MLP,)))
    register(SearchSpace(name="linear", tasks=CLS, define=define_linear, build=build_linear, train=train_space,
                         step=vision_step, description="softmax regression on the pixels: the fastest model",
                         starts=(START_LINEAR,)))
    register(SearchSpace(name="cnn", tasks=CLS, define=define_cnn, build=build_cnn, train=train_space,
                         step=vision_step, starts=(START_CNN, START_CNN_AFFINE, START_CNN_SGD),
                         description="convolutional blocks with batch norm, pooling and a dense head"))
    register(SearchSpace(name="resnet", tasks=CLS, define=nets.define_resnet, build=nets.build_resnet,
                         train=nets.train_net, step=vision_step,
                         description="torchvision ResNet-18/34, small-input stem, searched width and resolution"))
    register(SearchSpace(name="mobilenet", tasks=CLS, define=nets.define_mobilenet, build=nets.build_mobilenet,
                         train=nets.train_net, step=vision_step,
                         description="torchvision MobileNetV3-Small, stride-1 stem, searched width and resolution"))
    register(SearchSpace(name="resnet_pretrained", tasks=CLS, define=nets.define_resnet_pretrained,
                         build=nets.build_resnet_pretrained, train=nets.train_pretrained, step=vision_step,
                         check=nets.check_resnet_pretrained,
                         description="ImageNet ResNet-18/34 from the local torch cache; freeze or fine-tune"))
    register(SearchSpace(name="mobilenet_pretrained", tasks=CLS, define=nets.define_mobilenet_pretrained,
                         build=nets.build_mobilenet_pretrained, train=nets.train_pretrained, step=vision_step,
                         check=nets.check_mobilenet_pretrained,
                         description="ImageNet MobileNetV3-Small from the local torch cache; freeze or fine-tune"))


@hookimpl
def register_metrics(register) -> None:
    register(metrics.ACCURACY)
    register(metrics.TOP5_ACCURACY)
    register(metrics.MACRO_F1)
    register(metrics.BALANCED_ACCURACY)


@hookimpl
def register_baselines(register) -> None:
    register(Baseline(name="svc", tasks=CLS, fit=fit_svc,
                      description="RBF SVM on the pixels (0..1), C x gamma tuned by 5-fold CV on train"))


@hookimpl
def register_commands(app) -> None:
    from automl_plugins.vision._download import register

    register(app)
