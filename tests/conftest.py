import numpy as np
import pytest
import torch
import torchvision


@pytest.fixture(scope="session")
def vgg19():
    """A torchvision VGG-19 with seeded random weights (exactness does not need trained ones)."""
    torch.manual_seed(0)
    return torchvision.models.vgg19(weights=None)


@pytest.fixture(scope="session")
def vgg19_state(vgg19):
    return vgg19.state_dict()


def random_image(height, width, seed):
    return np.random.default_rng(seed).uniform(0, 255, (height, width, 3))


@pytest.fixture
def images():
    """A canvas, a content image and a style image of another size, for a canvas size."""

    def make(height, width, style_shape=(112, 96)):
        return random_image(height, width, 1), random_image(height, width, 2), random_image(*style_shape, 3)

    return make
