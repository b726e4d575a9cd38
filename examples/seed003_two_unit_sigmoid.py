"""Seed 003: f(x; w) = A(w3 A(w1 x1 + w2 x2) + w4) with A the sigmoid, one example x = (1, 1),
label y = 2, squared error. One forward pass storing the intermediates, one backward pass, one
gradient-descent step, and the loss goes down."""

import chainrule as cr

x1, x2, y = cr.tensor(1.0), cr.tensor(1.0), 2.0
w1, w2, w3, w4 = (cr.tensor(v, requires_grad=True) for v in (0.5, -0.3, 0.8, 0.1))

z = cr.sigmoid(w1 * x1 + w2 * x2)  # f1: the hidden unit
f = cr.sigmoid(w3 * z + w4)  # f2: the output
loss = (f - y) ** 2
loss.backward()
print(f"forward: z = f1(x) = {z.item():.4f}, f(x) = {f.item():.4f}, loss = {loss.item():.4f}")

# The chain rule by hand, from the loss back to each weight.
dL_df = 2 * (f.item() - y)
df_da2 = f.item() * (1 - f.item())
dz_da1 = z.item() * (1 - z.item())
by_hand = {"w4": dL_df * df_da2, "w3": dL_df * df_da2 * z.item(),
           "w1": dL_df * df_da2 * w3.item() * dz_da1 * x1.item(),
           "w2": dL_df * df_da2 * w3.item() * dz_da1 * x2.item()}
for name, w in (("w1", w1), ("w2", w2), ("w3", w3), ("w4", w4)):
    print(f"dL/d{name} = {w.grad.item():+.6f}   by hand {by_hand[name]:+.6f}")

alpha = 1.0
with cr.no_grad():
    for w in (w1, w2, w3, w4):
        w -= alpha * w.grad
new_f = cr.sigmoid(w3 * cr.sigmoid(w1 * x1 + w2 * x2) + w4)
new_loss = (new_f - y) ** 2
print(f"after one step (alpha = {alpha}): f(x) = {new_f.item():.4f}, "
      f"loss = {new_loss.item():.4f} (was {loss.item():.4f})")
