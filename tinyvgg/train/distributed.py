"""One model trained on several processes at once: synchronous data parallelism, with MPI
(through mpi4py) between CPU ranks and NCCL (through CuPy) between GPU ranks.

``mpiexec -n N tinyvgg train ...`` starts N copies of the command, the ranks. Each one
builds the same data, model and optimiser from the same settings (:func:`check_same_run`
refuses ranks started differently), takes rank 0's initial weights
(:func:`broadcast_state`), and then, for every global batch of ``--batch-size`` images:

1. takes its own contiguous part of the batch (``DataLoader(part=(rank, N))``); dropout
   numbers each sample by its place in the global batch (``random.set_first_sample``),
   so its masks are those one process would draw;
2. runs forward and backward on its part, its loss weighted by its share of the batch
   (n_rank / n), so that the sum of the ranks' gradients is the gradient of the global
   batch's mean loss; with ``--sync-bn`` batch norm uses the global batch's statistics;
3. packs the gradients into flat buckets of about 25 MB as backward produces them
   (:class:`GradientBuckets`) and starts each bucket's non-blocking sum over the ranks
   as soon as the bucket is whole, so communication overlaps the rest of backward;
4. waits for the sums once, and steps: every rank applies the same update to the same
   weights, so the weights stay identical without ever being sent again.

Only rank 0 prints and writes files. An exception on any rank ends every rank
(:func:`ending_every_rank_on_error`): MPI cannot leave a collective that a dead rank will
never join, so the job is aborted, with the failing rank and its error named.

A process started without ``mpiexec`` (or with ``-n 1``) never imports mpi4py and trains
exactly as before.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sys
import traceback

import numpy as np

from .. import backend, workers
from ..data.loader import part_bounds

#: the command that installs what several ranks need
MPI_EXTRA = 'python3 -m pip install -e ".[mpi]"'
#: the default bucket size, as PyTorch DDP's bucket_cap_mb
BUCKET_MB = 25.0
#: environment variables in which MPI launchers pass the number of ranks
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


class RanksDisagree(ValueError):
    """The ranks of one run were started with different settings or data."""


def launched_ranks(environ=None) -> int:
    """How many ranks the MPI launcher started (1 when there is none), read from the
    launcher's environment variables, without importing MPI."""
    environ = os.environ if environ is None else environ
    for name in _SIZE_VARIABLES:
        if environ.get(name, "").strip().isdigit():
            return int(environ[name])
    return 1


def import_mpi():
    """mpi4py's MPI module, or an ImportError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(f"training on several ranks (mpiexec -n N tinyvgg train) needs "
                          f"mpi4py and an MPI library, which the mpi extra installs: "
                          f"{MPI_EXTRA} ({error})") from None
    return MPI


def gpu_for_rank(local_rank: int, local_ranks: int, gpus: int) -> int:
    """The GPU of the rank numbered ``local_rank`` among the ``local_ranks`` ranks on its
    machine, which has ``gpus`` GPUs: local_rank mod gpus (on one machine, the rank's own
    number). NCCL needs one GPU per rank, so more ranks than GPUs on a machine are
    refused."""
    if gpus < 1:
        raise ValueError("train: --device cuda on several ranks needs a GPU on every "
                         "machine; this one has none")
    if local_ranks > gpus:
        raise ValueError(f"train: {local_ranks} ranks on one machine with {gpus} GPU"
                         f"{'' if gpus == 1 else 's'}: NCCL needs one GPU per rank; start "
                         f"at most {gpus} ranks per machine (mpiexec -n ... -ppn {gpus})")
    return local_rank % gpus


def nccl_communicator(comm, nccl):
    """A NCCL communicator over the ranks of the MPI communicator ``comm``: rank 0 makes
    the unique id, MPI broadcasts it, and every rank joins with it. ``nccl`` is the
    module (``cupy.cuda.nccl``)."""
    unique_id = nccl.get_unique_id() if comm.Get_rank() == 0 else None
    unique_id = comm.bcast(unique_id, root=0)
    return nccl.NcclCommunicator(comm.Get_size(), unique_id, comm.Get_rank())


class Group:
    """The ranks training one model, as seen from one of them: ``rank``, ``size``, and the
    sums and broadcasts between them (MPI for NumPy arrays, NCCL for CuPy arrays)."""

    def __init__(self, comm, local_rank: int = 0, local_ranks: int = 1):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.local_rank, self.local_ranks = local_rank, local_ranks
        self.device, self.gpu, self.nccl = "cpu", None, None
        self._side_stream = None

    def use_device(self, device: str) -> None:
        """Work on ``device``: on the CPU each rank splits its ops over its share of the
        machine's cores (unless TINYVGG_CPU_THREADS says otherwise); on GPUs rank r uses
        GPU r mod (GPUs on its machine) and sums GPU arrays through NCCL."""
        if device == "cpu":
            if not os.environ.get(workers.CPU_THREADS_ENV):
                workers.set_cpu_threads(max(1, _cores() // self.local_ranks))
            return
        backend.check_device(device)
        cupy = backend.cupy_module()
        self.gpu = gpu_for_rank(self.local_rank, self.local_ranks,
                                cupy.cuda.runtime.getDeviceCount())
        cupy.cuda.Device(self.gpu).use()
        try:
            from cupy.cuda import nccl
        except ImportError as error:
            raise ImportError(f"train: GPU ranks sum their gradients with NCCL through "
                              f"CuPy (cupy.cuda.nccl), which cannot load it here ({error}); "
                              f"install NCCL where CuPy finds it (CuPy's installation "
                              f"guide, Additional CUDA Libraries)") from None
        self.device, self.nccl = device, nccl_communicator(self.comm, nccl)

    def describe(self) -> str:
        """Where this rank runs: "host: cpu, 1 thread" or "host: cuda:1"."""
        if self.gpu is None:
            threads = workers.cpu_threads()
            where = f"cpu, {threads} thread{'' if threads == 1 else 's'}"
        else:
            where = f"cuda:{self.gpu}"
        return f"{socket.gethostname()}: {where}"

    # --- small messages (MPI, pickled) ---------------------------------------------
    def allgather(self, value) -> list:
        return self.comm.allgather(value)

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank."""
        return bool(self.comm.allreduce(bool(flag), op=self._mpi().LOR))

    def _mpi(self):
        return import_mpi()

    # --- arrays ------------------------------------------------------------------
    def allreduce_sum(self, array):
        """The sum of ``array`` over the ranks, a new array on ``array``'s device (the
        ``reduce`` of synchronised batch norm)."""
        xp = backend.array_module(array)
        total = xp.ascontiguousarray(array).copy()
        if xp is np:
            self.comm.Allreduce(self._mpi().IN_PLACE, total, op=self._mpi().SUM)
        else:  # behind the gradient sums under way: one stream keeps NCCL's calls in order
            self.start_sum(total).Wait()
        return total

    def start_sum(self, buffer):
        """Start summing the contiguous ``buffer`` over the ranks in place; returns a
        request whose ``wait()`` makes the sum available (on the GPU: to the work the
        current stream runs next)."""
        xp = backend.array_module(buffer)
        if xp is np:
            MPI = self._mpi()
            return self.comm.Iallreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        # NCCL runs on a side stream, after what the compute stream has queued so far
        # (the gradients the buffer was filled from); the compute stream waits for it
        # only when the sum is needed. Every NCCL call goes to this one stream, so they
        # run in the order they were made, the same on every rank, as NCCL requires.
        cuda = xp.cuda
        if self._side_stream is None:
            self._side_stream = cuda.Stream(non_blocking=True)
        queued = cuda.Event()
        queued.record(cuda.get_current_stream())
        self._side_stream.wait_event(queued)
        self._nccl_sum(buffer, self._side_stream)
        done = cuda.Event()
        done.record(self._side_stream)
        return _StreamRequest(done)

    def progress(self, requests) -> None:
        """Let MPI advance the non-blocking sums under way (MPICH moves them on only
        inside MPI calls)."""
        if self.device == "cpu" and requests:
            self._mpi().Request.Testall(requests)

    def sum_numbers(self, values) -> np.ndarray:
        """The sums over the ranks of a few numbers (float64)."""
        total = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self._mpi().IN_PLACE, total, op=self._mpi().SUM)
        return total

    def _nccl_sum(self, buffer, stream) -> None:
        if self.nccl is None:
            raise RuntimeError("train: a GPU array reached a group without a NCCL "
                               "communicator")
        from cupy.cuda import nccl
        kinds = {np.dtype(np.float32): nccl.NCCL_FLOAT32,
                 np.dtype(np.float64): nccl.NCCL_FLOAT64}
        self.nccl.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size,
                            kinds[np.dtype(buffer.dtype)], nccl.NCCL_SUM, stream.ptr)

    def broadcast_arrays(self, arrays: dict) -> dict:
        """Rank 0's values of a dict of NumPy arrays, on every rank (same keys and shapes
        everywhere; :func:`check_same_run` makes sure)."""
        out = {}
        for key, value in arrays.items():
            buffer = np.array(value, copy=True, order="C")
            self.comm.Bcast(buffer, root=0)
            out[key] = buffer
        return out

    def abort(self, code: int) -> None:
        """End every rank of the job, this one included, with exit status ``code``."""
        sys.stderr.flush()
        self.comm.Abort(code)
        os._exit(code)  # MPI_Abort may return while the launcher ends the processes


class _StreamRequest:
    """A NCCL sum under way on the side stream: ``wait()`` makes the compute stream wait
    for it (the host does not)."""

    def __init__(self, done):
        self.done = done

    def Wait(self):
        import cupy
        cupy.cuda.get_current_stream().wait_event(self.done)


def world() -> Group | None:
    """The group of all the ranks mpiexec started, or None for a process started alone
    (or with ``mpiexec -n 1``), which trains as it always has and never imports MPI.
    Call it first thing: from here on an error on one rank can end them all
    (:func:`ending_every_rank_on_error`), whereas a rank that exits before joining MPI
    leaves the others waiting for it. Then :meth:`Group.use_device`."""
    if launched_ranks() <= 1:
        return None
    MPI = import_mpi()
    comm = MPI.COMM_WORLD
    if comm.Get_size() <= 1:
        return None
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_rank, local_ranks = local.Get_rank(), local.Get_size()
    local.Free()
    return Group(comm, local_rank=local_rank, local_ranks=local_ranks)


def abort_if_launched(code) -> None:
    """For a process of several ranks that must stop before it has joined MPI (its
    command line is wrong): end every rank, instead of leaving the others waiting for
    this one. Nothing happens in a process started alone, or for code 0."""
    if code and launched_ranks() > 1:
        import_mpi().COMM_WORLD.Abort(code if isinstance(code, int) else 2)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def ending_every_rank_on_error(group: Group | None, command: str, codes=()):
    """Run the block; an exception on one rank prints ``command: rank r of N: error`` and
    aborts the whole job, so that no rank waits for ever in a sum the failed one will
    never join. ``codes``, pairs (exception class, exit code), are the errors the command
    expects (others exit with 1 and print their traceback too).
    :class:`RanksDisagree`, found by every rank at once, is printed by rank 0 alone, and
    every rank exits with its code without aborting the job."""
    if group is None:
        yield
        return
    try:
        yield
    except BaseException as error:  # a Ctrl-C too: the other ranks must not wait
        if isinstance(error, SystemExit) and not error.code:
            raise
        code = next((c for kind, c in codes if isinstance(error, kind)), 1)
        if isinstance(error, KeyboardInterrupt):
            code = 130
        if group.rank == 0 or not isinstance(error, RanksDisagree):
            message = str(error).removeprefix("train: ") or type(error).__name__
            usage = isinstance(error, (KeyboardInterrupt, RanksDisagree,
                                       *(kind for kind, _ in codes)))
            if not usage:  # not one the command expects: its kind and where it arose
                message = f"{type(error).__name__}: {message}"
            print(f"{command}: rank {group.rank} of {group.size}: {message}",
                  file=sys.stderr, flush=True)
            if not usage:
                traceback.print_exception(error, file=sys.stderr)
            sys.stderr.flush()
        if isinstance(error, RanksDisagree):
            # every rank found it at once, so none waits in a sum: each ends normally, and
            # the launcher forwards rank 0's whole message (an abort can end the job
            # before a loaded machine has passed it on)
            raise SystemExit(code) from None
        group.abort(code)


# --- the same run on every rank ----------------------------------------------------

def data_digest(dataset) -> str:
    """A digest of a dataset's images and labels (whether the ranks read the same data)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(dataset.images).tobytes())
    digest.update(np.ascontiguousarray(dataset.labels).tobytes())
    return digest.hexdigest()[:16]


def check_same_run(group: Group, settings: dict) -> None:
    """Refuse ranks whose ``settings`` (flag -> value: the run's configuration, the digest
    of its data, the checkpoint it resumes) differ from rank 0's, naming the first
    difference. Every rank raises :class:`RanksDisagree`."""
    everyone = group.allgather(settings)
    first = everyone[0]
    for rank, other in enumerate(everyone[1:], start=1):
        for key in sorted(set(first) | set(other)):
            if other.get(key) != first.get(key):
                raise RanksDisagree(
                    f"train: the ranks were started with different settings: rank {rank} "
                    f"has {key} {other.get(key)}, rank 0 has {key} {first.get(key)}; every "
                    f"rank of a run must train the same model on the same data")


def check_batch_size(batch_size: int, ranks: int) -> None:
    """The global batch must give every rank at least one image."""
    if batch_size < ranks:
        raise ValueError(f"train: --batch-size is the global batch, split over the ranks: "
                         f"{batch_size} image(s) cannot be shared by {ranks} ranks; give "
                         f"--batch-size {ranks} or more")


def broadcast_state(group: Group, model) -> None:
    """Give every rank rank 0's weights and buffers."""
    model.load_state_dict(group.broadcast_arrays(model.state_dict()))


def synchronise_batch_norm(group: Group, model) -> int:
    """Make every batch-norm layer of ``model`` normalise with the statistics of the whole
    global batch (``--sync-bn``); returns how many layers there are."""
    layers = [m for _, m in model.named_modules() if hasattr(m, "running_mean")]
    for layer in layers:
        layer.reduce = group.allreduce_sum
    return len(layers)


def gather_parts(group: Group, outputs: np.ndarray, loader) -> np.ndarray:
    """The outputs of a pass over ``loader`` in the loader's order, on every rank, from
    each rank's ``outputs`` for its parts of the batches (rows in batch order)."""
    everyone = group.allgather(outputs)
    pieces, taken = [], [0] * group.size
    for index in range(len(loader)):
        size = loader.batch_size_of(index)
        for rank in range(group.size):
            low, high = part_bounds(size, rank, group.size)
            if high > low:
                pieces.append(everyone[rank][taken[rank]:taken[rank] + high - low])
                taken[rank] += high - low
    return np.concatenate(pieces)


# --- gradients ---------------------------------------------------------------------

def plan_buckets(sizes, dtypes, bucket_bytes: float) -> list:
    """Group tensors 0..n-1 (given in the order backward produces their gradients) into
    buckets of consecutive tensors of one dtype, each closed once it holds at least
    ``bucket_bytes`` (a tensor larger than that gets a bucket of its own)."""
    buckets, current, filled = [], [], 0
    for index, (size, dtype) in enumerate(zip(sizes, dtypes)):
        if current and np.dtype(dtypes[current[0]]) != np.dtype(dtype):
            buckets.append(current)
            current, filled = [], 0
        current.append(index)
        filled += size * np.dtype(dtype).itemsize
        if filled >= bucket_bytes:
            buckets.append(current)
            current, filled = [], 0
    if current:
        buckets.append(current)
    return buckets


class GradientBuckets:
    """The parameters' gradients, summed over the ranks in flat buckets.

    Buckets hold the parameters in the reverse of their order in the model, roughly the
    order backward finishes their gradients. A hook on each parameter
    (``Tensor.register_grad_hook``) copies its gradient into its bucket as soon as
    backward has it; with ``overlap``, each bucket's non-blocking sum starts once it is
    whole, while backward computes the layers below. Buckets start strictly in order,
    so every rank starts the same sums in the same order, as MPI and NCCL require.
    :meth:`finish` starts any left, waits for all, and writes the sums back into the
    parameters' ``.grad``. Use as ``begin(); loss.backward(); finish()``.
    """

    def __init__(self, parameters, group: Group, bucket_mb: float = BUCKET_MB,
                 overlap: bool = True):
        if not bucket_mb > 0:
            raise ValueError(f"train: --bucket-mb must be positive, got {bucket_mb}")
        self.group, self.overlap = group, overlap
        params = [p for p in parameters if p.requires_grad][::-1]
        plan = plan_buckets([p.size for p in params], [p.dtype for p in params],
                            bucket_mb * 2**20)
        self.buckets = []   # (parameters, flat buffer, [(start, stop)])
        self._where = {}    # id(parameter) -> (bucket, start, stop)
        for number, indices in enumerate(plan):
            members = [params[i] for i in indices]
            bounds, start = [], 0
            for p in members:
                bounds.append((start, start + p.size))
                self._where[id(p)] = (number, start, start + p.size)
                start += p.size
            xp = backend.array_module(members[0].data)
            self.buckets.append((members, xp.zeros(start, dtype=members[0].dtype), bounds))
        self._handles = [p.register_grad_hook(self._ready) for p in params]
        self.begin()

    def begin(self) -> None:
        """Forget the last step's gradients: call before each backward."""
        self._filled = [0] * len(self.buckets)
        self._seen = set()
        self._requests = []

    def _ready(self, p) -> None:
        number, start, stop = self._where[id(p)]
        self.buckets[number][1][start:stop] = p.grad.reshape(-1)
        if id(p) not in self._seen:
            self._seen.add(id(p))
            self._filled[number] += 1
        if self.overlap:
            self._start_whole_buckets()
        self.group.progress(self._requests)

    def _start_whole_buckets(self, every: bool = False) -> None:
        while len(self._requests) < len(self.buckets):
            number = len(self._requests)
            members, buffer, bounds = self.buckets[number]
            if not every and self._filled[number] < len(members):
                return
            for p, (start, stop) in zip(members, bounds):
                if id(p) not in self._seen:  # backward did not reach it: no gradient
                    buffer[start:stop] = 0
            self._requests.append(self.group.start_sum(buffer))

    def finish(self) -> None:
        """Sum whatever is not under way yet, wait for every bucket, and put the sums in
        the parameters' ``.grad``."""
        self._start_whole_buckets(every=True)
        for request, (members, buffer, bounds) in zip(self._requests, self.buckets):
            request.Wait()
            for p, (start, stop) in zip(members, bounds):
                total = buffer[start:stop].reshape(p.shape)
                if p.grad is None:
                    p.grad = total.copy()
                else:
                    p.grad[...] = total

    def remove(self) -> None:
        """Take the hooks off the parameters."""
        for handle in self._handles:
            handle.remove()


def batch_share(group: Group | None, loader, index: int) -> tuple[int, int]:
    """(first sample, samples) of this rank's part of batch ``index`` of ``loader``."""
    size = loader.batch_size_of(index)
    if group is None:
        return 0, size
    low, high = part_bounds(size, group.rank, group.size)
    return low, high - low


def whole_batches(group: Group | None, loader) -> int:
    """Batches per epoch: all of them, but the last one when it has fewer images than
    there are ranks (each rank needs at least one)."""
    count = len(loader)
    if group is not None and count and loader.batch_size_of(count - 1) < group.size:
        count -= 1
    return count
