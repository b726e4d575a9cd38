"""Seed 002: cross-entropy, dL/dz = q - y for softmax outputs, and the 60,600-parameter MLP
(100 inputs, 5 hidden layers of 100, 100 outputs) trained a few steps by gradient descent."""

import numpy as np

import chainrule as cr
from chainrule import nn
from chainrule.nn import functional as F

y = np.array([1.0, 0.0, 0.0])
for p in ([0.8, 0.1, 0.1], [0.1, 0.8, 0.1]):
    loss = -(y * np.log(p)).sum()
    print(f"y = {y.tolist()}, p = {p}: cross-entropy = {loss:.3f}")

z = cr.tensor(np.array([2.0, 1.0, 0.1]), requires_grad=True)
loss = F.cross_entropy(z, np.array(0))
loss.backward()
q = cr.softmax(z).data
print(f"logits z = {z.data.tolist()}: q = {np.round(q, 4).tolist()}, loss = {loss.item():.4f}")
print(f"dL/dz = {np.round(z.grad.data, 4).tolist()} = q - y = {np.round(q - y, 4).tolist()}")

cr.manual_seed(0)
layers = []
for _ in range(6):
    layers += [nn.Linear(100, 100), nn.Sigmoid()]
model = nn.Sequential(*layers[:-1])
print(f"seed 002's network: {model.num_parameters():,} parameters "
      f"(6 x 100 x 100 = 60,000 weights + 6 x 100 = 600 biases)")
rng = np.random.default_rng(0)
X = cr.tensor(rng.standard_normal((64, 100)).astype(np.float32))
labels = rng.integers(0, 100, 64)
opt = cr.optim.SGD(model.parameters(), lr=0.5)
for step in range(5):
    opt.zero_grad()
    loss = F.cross_entropy(model(X), labels)
    loss.backward()
    opt.step()
    print(f"step {step}: average loss over the batch {loss.item():.4f}")
