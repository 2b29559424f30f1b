import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "")
# One compilation cache for the whole session, shared with the CLI processes that tests start (they
# inherit the variable): a program compiled by one test is loaded, not recompiled, by the next.
os.environ.setdefault("LAWFIT_CACHE_DIR", tempfile.mkdtemp(prefix="lawfit-test-cache-"))
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from lawfit.cli import enable_compile_cache  # noqa: E402

enable_compile_cache()
