"""Seed 001's view of backprop: each operation has a Jacobian, and the backward pass multiplies
a vector by it (a vector-Jacobian product) instead of ever building it."""

import numpy as np

import chainrule as cr

z = np.array([1.0, 2.0, 3.0])
q = cr.softmax(cr.tensor(z)).data
J = cr.jacobian(cr.softmax)(z).data
print("softmax Jacobian (diag(q) - q q^T):")
print(np.round(J, 4))
print("max |J - (diag(q) - q q^T)| =", float(np.abs(J - (np.diag(q) - np.outer(q, q))).max()))

v = np.array([1.0, 0.0, -1.0])
out, vjp_fn = cr.vjp(cr.softmax, z)
(vjp,) = vjp_fn(v)
print("v^T J by the backward pass:", np.round(vjp.data, 6).tolist())
print("v^T J from the matrix:     ", np.round(v @ J, 6).tolist())
