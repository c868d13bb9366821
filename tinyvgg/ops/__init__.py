"""The ops, one family per file. Each file holds the op's math (in its
docstring), a naive loop reference, and the op class: its input checks
(``check``), then its CPU and CUDA paths side by side (``forward_cpu``,
``forward_cuda``, ``backward_cpu``, ``backward_cuda``; ``tensor.Function``
picks one by the inputs' device). The CUDA paths launch the kernels of the
``kernels/*.cu`` file named after the op's file:

    conv.py        conv3x3, conv3x3_relu, conv1x1: the math and the op classes, whose story
                   continues in three files by role:
      rows.py        pixel rows, im2col, kernel matrices (also used by linear, norm)
      conv_cpu.py    conv3x3's CPU ladder, naive loops to Winograd, and "auto"
      conv_cuda.py   the GPU ladders of conv3x3.cu and conv1x1.cu, launched
    pool.py        maxpool2x2, adaptive_avg_pool2d
    activation.py  relu, tanh
    linear.py      linear, and the GPU matrix products behind it and Winograd
    shape.py       reshape / flatten
    dropout.py     inverted dropout with a Philox mask
    norm.py        batch_norm2d
    lrn.py         local_response_norm (across channels)
    loss.py        softmax cross-entropy
    arith.py       add, mul, sum, cast (a tensor's +, *, .sum(), .to(dtype))
    sgd.py         the in-place SGD step with momentum (PyTorch's rule)
    checks.py      the input validation they share
"""
