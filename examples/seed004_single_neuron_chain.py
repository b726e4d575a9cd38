"""Seed 004: a chain of single neurons. z = w o_prev + b, o = f(z), C = (o - t)^2, so
dC/dw = dz/dw * do/dz * dC/do = o_prev * f'(z) * 2(o - t) and dC/db = f'(z) * 2(o - t)."""

import chainrule as cr

o_prev, t = cr.tensor(0.5), 0.9
w, b = cr.tensor(0.8, requires_grad=True), cr.tensor(-0.2, requires_grad=True)

with cr.inspect.record():  # every value stays for cr.explain, before or after backward()
    z = w * o_prev + b
    o = cr.sigmoid(z)
    error = o - t
    C = error ** 2
C.backward()

f_prime = o.item() * (1 - o.item())  # sigmoid'(z) = s(z)(1 - s(z))
dC_dw = o_prev.item() * f_prime * 2 * (o.item() - t)
dC_db = f_prime * 2 * (o.item() - t)
print(f"z = {z.item():.4f}, o = {o.item():.4f}, C = {C.item():.6f}")
print(f"dC/dw = o_prev * f'(z) * 2(o - t) = {o_prev.item():.4f} * {f_prime:.4f} * "
      f"{2 * (o.item() - t):.4f} = {dC_dw:.6f}")
print(f"w.grad = {w.grad.item():.6f}")
print(f"dC/db = f'(z) * 2(o - t) = {dC_db:.6f}; b.grad = {b.grad.item():.6f}")
print()
print(cr.explain(C, w, names={"(o - t)": error}))  # the other names come from the variables
