"""The ops, one family per file. Each file holds the op's math (in its
docstring), a naive loop reference, the fast version the engine runs, and
the backward:

    conv.py        conv3x3, conv1x1
    pool.py        maxpool2x2, adaptive_avg_pool2d
    activation.py  relu, tanh
    linear.py      linear
    shape.py       reshape / flatten
    dropout.py     inverted dropout with a Philox mask
    norm.py        batch_norm2d
    lrn.py         local_response_norm (across channels)
    loss.py        softmax cross-entropy
    arith.py       add, mul, sum (for losses and penalties)
    sgd.py         the in-place SGD step with momentum (PyTorch's rule)
    checks.py      the input validation they share
"""
