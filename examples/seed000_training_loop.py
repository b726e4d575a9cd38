"""Seed 000's recipe with nothing but the engine: start from random weights, feed the data
forward, average the loss over the batch, backpropagate, update W <- W - alpha dL/dW, and repeat
until the loss is satisfactory."""

import numpy as np

import chainrule as cr

rng = np.random.default_rng(0)
X = rng.standard_normal((200, 2)).astype(np.float32)
y = (X[:, :1] * X[:, 1:] > 0).astype(np.float32)  # XOR-like quadrants: needs a hidden layer

cr.manual_seed(0)
W1 = cr.randn(2, 16, requires_grad=True)
b1 = cr.zeros(16, requires_grad=True)
W2 = cr.randn(16, 1, requires_grad=True)
b2 = cr.zeros(1, requires_grad=True)
params = [W1, b1, W2, b2]
alpha, target, x, t = 0.5, 0.05, cr.tensor(X), cr.tensor(y)

for step in range(1, 5001):
    p = cr.sigmoid(cr.tanh(x @ W1 + b1) @ W2 + b2)
    loss = ((p - t) ** 2).mean()  # averaged over the batch
    for w in params:
        w.grad = None
    loss.backward()
    with cr.no_grad():
        for w in params:
            w -= alpha * w.grad
    if step % 250 == 0 or loss.item() < target:
        accuracy = ((p.data > 0.5) == (y > 0.5)).mean()
        print(f"step {step}: loss {loss.item():.4f}, accuracy {accuracy:.1%}")
    if loss.item() < target:
        print(f"loss below {target}: satisfactory after {step} steps")
        break
