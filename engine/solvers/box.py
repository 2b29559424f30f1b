"""Box bounds shared by the solvers: projection, the components a move would push out of the
box, and a unit-free stationarity measure that ignores those components."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

_TINY = 1e-300


class Box(eqx.Module):
    """lower / upper: bounds of the free parameters (None when unbounded)."""

    lower: tuple[float, ...] | None = eqx.field(static=True, default=None)
    upper: tuple[float, ...] | None = eqx.field(static=True, default=None)

    def project(self, theta):
        if self.lower is None:
            return theta
        return jnp.clip(theta, np.asarray(self.lower), np.asarray(self.upper))

    def blocked(self, theta, direction):
        """Components at a bound that moving along `direction` would push outside the box."""
        if self.lower is None:
            return jnp.zeros(theta.shape, dtype=bool)
        return ((theta <= np.asarray(self.lower)) & (direction < 0)) | (
            (theta >= np.asarray(self.upper)) & (direction > 0)
        )

    def stationarity(self, theta, grad, f):
        """max_j |g_j| max(|theta_j|, 1) / |f| over the components descent may still move."""
        grad = jnp.where(self.blocked(theta, -grad), 0.0, grad)
        return jnp.max(jnp.abs(grad) * jnp.maximum(jnp.abs(theta), 1.0)) / jnp.maximum(jnp.abs(f), _TINY)
