"""Builds the example: `python setup.py build_ext --inplace` (pyrnn, numpy and setuptools
installed). The extension includes pyrnn's header only; it does not link against pyrnn."""

import pyrnn
from setuptools import Extension, setup

setup(
    name="pyrnn-c-example",
    ext_modules=[
        Extension(
            "pyrnn_c_example", ["pyrnn_c_example.c"], include_dirs=[pyrnn.get_include()]
        )
    ],
)
