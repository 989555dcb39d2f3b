#!/usr/bin/env python3
"""Data-parallel training through mpirun (docs/distributed.md): two ranks train the weights one
process trains, resume bit for bit (and in one process to rounding), agree on when to stop (Ctrl-C
on mpirun, SIGTERM to a rank), refuse batches they cannot split, and stop (not hang) when a rank
dies or stops answering.

usage: test_distributed.py UNET_BINARY [TestClass]   (CTest passes the build's binary)
"""
import array
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

UNET = None
WORK = None
MODEL = ["--image-size", "32", "--base-width", "4", "--depth", "2", "--seed", "1"]
TINY = [*MODEL, "--lr", "3e-3", "--val-patients", "2", "--device", "cpu"]
# mpirun as root in a container: allowed explicitly; no single-copy mechanism (ptrace is not
# allowed there); one thread a rank, as on the 2-core CI machine.
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl_vader_single_copy_mechanism="none", OMP_NUM_THREADS="1")


def mpirun(ranks, *args, check=True):
    command = ["mpirun", "-np", str(ranks), "--oversubscribe", UNET, *args]
    result = subprocess.run(command, capture_output=True, text=True, env=MPI_ENV)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def unet(*args, check=True):
    result = subprocess.run([UNET, *args], capture_output=True, text=True, env=MPI_ENV)
    if check and result.returncode != 0:
        raise AssertionError(f"unet {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def tensors(path):
    """Every tensor of a safetensors file (weights and Adam's moments) as one flat list of floats."""
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    values = array.array("f")
    for name in sorted(k for k in header if k != "__metadata__"):
        assert header[name]["dtype"] == "F32", name
        begin, end = header[name]["data_offsets"]
        values.frombytes(data[8 + length + begin:8 + length + end])
    return values


def relative_difference(a, b):
    assert len(a) == len(b)
    difference = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
    return difference / math.sqrt(sum(y * y for y in b))


def checkpoint_step(path):
    """The training step a checkpoint holds (its unet.training metadata)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return json.loads(header["__metadata__"]["unet.training"])["step"]


def train_losses(run):
    with open(os.path.join(run, "metrics.csv")) as f:
        rows = [line.strip().split(",") for line in f]
    column = rows[0].index("train_loss")
    return [float(row[column]) for row in rows[1:]]


def rank_pids(launcher):
    """The launcher's children: the ranks (mpirun forks them itself on one machine)."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == launcher.pid:
            children.append(int(entry))
    return sorted(children)


def end_job(job):
    """Ends a job a failing test left running: its ranks first (SIGCONT wakes a stopped one), then mpirun."""
    if job.poll() is not None:
        return
    for pid in rank_pids(job):
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    job.kill()
    job.communicate()


def wait_for_file(path, process, seconds=120):
    deadline = time.time() + seconds
    while not os.path.exists(path):
        if process.poll() is not None:
            raise AssertionError(f"the job ended ({process.returncode}) before {path} appeared")
        if time.time() > deadline:
            raise AssertionError(f"{path} did not appear within {seconds} s")
        time.sleep(0.05)


class Data(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = os.path.join(WORK, "phantom")
        if not os.path.isdir(cls.data):
            unet("synth", "--out", cls.data, "--patients", "6", "--slices", "12", "--size", "32", "--seed", "5")

    def start_long_run(self, run, *extra, env=MPI_ENV):
        """A 2-rank run of many epochs, in the background; ended (with its ranks) when the test ends."""
        job = subprocess.Popen(["mpirun", "-np", "2", UNET, "train", "--data", self.data, *TINY, "--batch", "4",
                                "--epochs", "500", "--out", run, *extra], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
        self.addCleanup(end_job, job)
        wait_for_file(os.path.join(run, "last.safetensors"), job)
        time.sleep(0.3)  # mid-epoch
        ranks = rank_pids(job)
        self.assertEqual(len(ranks), 2)
        return job, ranks


class Equivalence(Data):
    """Two ranks at global batch 8 train what one process trains at batch 8."""

    def check_loss(self, loss):
        one = os.path.join(WORK, f"one-{loss}")
        two = os.path.join(WORK, f"two-{loss}")
        unet("train", "--data", self.data, *TINY, "--batch", "8", "--epochs", "2", "--loss", loss, "--out", one)
        mpirun(2, "train", "--data", self.data, *TINY, "--batch", "8", "--epochs", "2", "--loss", loss, "--out", two)
        weights = relative_difference(tensors(os.path.join(two, "last.safetensors")),
                                      tensors(os.path.join(one, "last.safetensors")))
        losses = max(abs(a - b) / abs(b) for a, b in zip(train_losses(two), train_losses(one)))
        print(f"\n{loss}: R=2 against R=1 after 2 epochs: weights and moments differ by {weights:.2e} relative, "
              f"epoch losses by {losses:.2e}", file=sys.stderr)
        self.assertLess(weights, 1e-5)
        self.assertLess(losses, 1e-5)
        self.assertEqual(len(train_losses(two)), 2)
        # Rank 0 alone wrote the run folder: one start record, naming both ranks.
        with open(os.path.join(two, "log.jsonl")) as f:
            starts = [json.loads(line) for line in f if '"event":"start"' in line]
        self.assertEqual([s["ranks"] for s in starts], [2])

    def test_bce(self):
        self.check_loss("bce")

    def test_sharded_validation_scores_what_one_process_scores(self):
        # With a learning rate of 0 the weights stay the seed's on every rank, so the validation
        # metrics (each rank scores one of the two validation patients, the scores are summed)
        # must be one process's to the last printed digit.
        one = os.path.join(WORK, "val-one")
        two = os.path.join(WORK, "val-two")
        flags = ["train", "--data", self.data, *MODEL, "--lr", "0", "--val-patients", "2", "--device", "cpu",
                 "--batch", "8", "--epochs", "1"]
        unet(*flags, "--out", one)
        mpirun(2, *flags, "--out", two)
        def rows(run):
            with open(os.path.join(run, "metrics.csv")) as f:
                return [line.strip().rsplit(",", 1)[0] for line in f]  # without the seconds
        self.assertEqual(rows(two), rows(one))
        with open(os.path.join(one, "val_patients.csv")) as a, open(os.path.join(two, "val_patients.csv")) as b:
            self.assertEqual(b.read(), a.read())

    def test_sim_with_graphs_matches_one_process(self):
        # On sim the collectives are host nodes inside the captured step's graph.
        one = os.path.join(WORK, "sim-one")
        two = os.path.join(WORK, "sim-two")
        flags = ["train", "--data", self.data, *MODEL, "--lr", "3e-3", "--val-patients", "1", "--device", "sim",
                 "--graph", "on", "--batch", "8", "--epochs", "1", "--loss", "bce+dice"]
        unet(*flags, "--out", one)
        mpirun(2, *flags, "--out", two)
        weights = relative_difference(tensors(os.path.join(two, "last.safetensors")),
                                      tensors(os.path.join(one, "last.safetensors")))
        print(f"\nsim, graphs on: R=2 against R=1 after 1 epoch: {weights:.2e} relative", file=sys.stderr)
        self.assertLess(weights, 1e-5)

    def test_bce_dice(self):
        self.check_loss("bce+dice")


class Resume(Data):
    def test_a_two_rank_run_resumed_mid_epoch_is_bit_identical(self):
        whole = os.path.join(WORK, "resume-whole")
        parts = os.path.join(WORK, "resume-parts")
        flags = ["train", "--data", self.data, *TINY, "--batch", "4", "--epochs", "2", "--loss", "bce+dice"]
        mpirun(2, *flags, "--out", whole)
        stopped = mpirun(2, *flags, "--out", parts, "--stop-after-steps", "5", check=False)
        self.assertEqual(stopped.returncode, 130, stopped.stdout + stopped.stderr)
        mpirun(2, "train", "--out", parts, "--resume")
        self.assertEqual(tensors(os.path.join(parts, "last.safetensors")),
                         tensors(os.path.join(whole, "last.safetensors")))

    def test_a_two_rank_checkpoint_resumed_in_one_process_agrees_to_rounding(self):
        # Another R splits the gradient sums elsewhere (docs/distributed.md, determinism): the same
        # training to rounding, not to the bit.
        whole = os.path.join(WORK, "other-r-whole")
        parts = os.path.join(WORK, "other-r-parts")
        flags = ["train", "--data", self.data, *TINY, "--batch", "4", "--epochs", "2", "--loss", "bce+dice"]
        mpirun(2, *flags, "--out", whole)
        stopped = mpirun(2, *flags, "--out", parts, "--stop-after-steps", "5", check=False)
        self.assertEqual(stopped.returncode, 130, stopped.stdout + stopped.stderr)
        unet("train", "--out", parts, "--resume")
        with open(os.path.join(parts, "log.jsonl")) as f:
            resumes = [json.loads(line) for line in f if '"event":"resume"' in line]
        self.assertEqual([(r["ranks"], r["step"]) for r in resumes], [(1, 5)])
        weights = relative_difference(tensors(os.path.join(parts, "last.safetensors")),
                                      tensors(os.path.join(whole, "last.safetensors")))
        losses = max(abs(a - b) / abs(b) for a, b in zip(train_losses(parts), train_losses(whole)))
        print(f"\n2 ranks resumed in 1 process at step 5 against 2 ranks throughout, after 2 epochs: weights and "
              f"moments differ by {weights:.2e} relative, epoch losses by {losses:.2e}", file=sys.stderr)
        self.assertEqual(len(train_losses(parts)), 2)
        self.assertLess(weights, 1e-5)
        self.assertLess(losses, 1e-5)

    def test_ctrl_c_on_mpirun_saves_one_checkpoint_that_resumes_bit_identically(self):
        # Open MPI's mpirun turns SIGINT into SIGTERM to every rank, then SIGKILL after
        # odls_base_sigkill_timeout seconds (1 by default): the step in flight and the save must fit
        # in it. 5 s here, so that a loaded CI machine cannot make the test flaky.
        run = os.path.join(WORK, "ctrl-c")
        env = dict(MPI_ENV, OMPI_MCA_odls_base_sigkill_timeout="5")
        job, _ = self.start_long_run(run, "--loss", "bce+dice", env=env)
        job.send_signal(signal.SIGINT)  # to mpirun itself, as a terminal's Ctrl-C
        out, err = job.communicate(timeout=60)
        self.assertGreater(job.returncode, 0, out + err)  # an exit status (1 from Open MPI 4.1), not a signal
        # mpirun stops draining the ranks' terminals when it is interrupted, so rank 0's "stopped
        # after step" line may be dropped (models/training_run.cpp, catch_interrupts); log.jsonl's
        # record is the one that must be there.
        stops = [line for line in out.splitlines() if line.startswith("stopped after step ")]
        self.assertLessEqual(len(stops), 1, out + err)
        with open(os.path.join(run, "log.jsonl")) as f:
            interrupted = [json.loads(line) for line in f if '"event":"interrupted"' in line]
        self.assertEqual(len(interrupted), 1, out + err)
        step = interrupted[0]["step"]
        if stops:
            self.assertIn(f"stopped after step {step} ", stops[0])
        self.assertEqual(checkpoint_step(os.path.join(run, "last.safetensors")), step)
        self.assertEqual([name for name in os.listdir(run) if ".tmp-" in name], [])  # no save was cut short
        # The checkpoint is the state of step `step` on every rank: resumed for 3 more steps, it has
        # the bits of a run never interrupted and stopped at step + 3.
        resumed = mpirun(2, "train", "--out", run, "--resume", "--stop-after-steps", "3", check=False)
        self.assertEqual(resumed.returncode, 130, resumed.stdout + resumed.stderr)
        whole = os.path.join(WORK, "ctrl-c-whole")
        reference = mpirun(2, "train", "--data", self.data, *TINY, "--batch", "4", "--epochs", "500",
                           "--loss", "bce+dice", "--out", whole, "--stop-after-steps", str(step + 3), check=False)
        self.assertEqual(reference.returncode, 130, reference.stdout + reference.stderr)
        self.assertEqual(checkpoint_step(os.path.join(whole, "last.safetensors")), step + 3)
        self.assertEqual(tensors(os.path.join(run, "last.safetensors")),
                         tensors(os.path.join(whole, "last.safetensors")))

    def test_sigterm_to_one_rank_stops_every_rank_at_the_same_step(self):
        run = os.path.join(WORK, "sigterm")
        job, ranks = self.start_long_run(run)
        os.kill(ranks[1], signal.SIGTERM)  # only rank 1 is asked; rank 0 must stop and save too
        out, err = job.communicate(timeout=60)
        self.assertNotEqual(job.returncode, 0)
        self.assertIn("stopped after step", out, out + err)
        with open(os.path.join(run, "log.jsonl")) as f:
            self.assertIn('"event":"interrupted"', f.read())
        resumed = mpirun(2, "train", "--out", run, "--resume", "--stop-after-steps", "1", check=False)
        self.assertEqual(resumed.returncode, 130, resumed.stdout + resumed.stderr)


class BadBatch(Data):
    def test_a_batch_that_does_not_divide_is_refused(self):
        result = mpirun(2, "train", "--data", self.data, *TINY, "--batch", "3", "--out",
                        os.path.join(WORK, "odd"), check=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("error: --batch 3 does not divide among 2 ranks", result.stderr)
        self.assertFalse(os.path.exists(os.path.join(WORK, "odd", "log.jsonl")))

    def test_more_ranks_than_samples_is_refused(self):
        result = mpirun(3, "train", "--data", self.data, *TINY, "--batch", "2", "--out",
                        os.path.join(WORK, "few"), check=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("error: --batch 2 is smaller than the 3 ranks", result.stderr)


class Faults(Data):
    """A rank that dies or stops answering ends the job, with the last checkpoint intact."""

    def check_checkpoint_loads(self, run):
        # One process continues the two ranks' run (the global batch divides by 1) for one step.
        result = unet("train", "--out", run, "--resume", "--stop-after-steps", "1", check=False)
        self.assertEqual(result.returncode, 130, result.stdout + result.stderr)

    def test_a_killed_rank_stops_the_job(self):
        run = os.path.join(WORK, "killed")
        job, ranks = self.start_long_run(run)
        os.kill(ranks[1], signal.SIGKILL)
        out, err = job.communicate(timeout=60)
        self.assertNotEqual(job.returncode, 0)
        self.check_checkpoint_loads(run)

    def test_a_stopped_rank_makes_the_other_time_out(self):
        run = os.path.join(WORK, "stopped")
        timeout = 3
        job, ranks = self.start_long_run(run, "--collective-timeout", str(timeout))
        os.kill(ranks[1], signal.SIGSTOP)
        stopped_at = time.time()
        out, err = job.communicate(timeout=timeout + 30)
        waited = time.time() - stopped_at
        print(f"\nrank 0 gave up {waited:.1f} s after rank 1 stopped (--collective-timeout {timeout})",
              file=sys.stderr)
        self.assertNotEqual(job.returncode, 0)
        self.assertLess(waited, timeout + 5)
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        self.assertTrue(any("all-reduce" in line and "at step" in line and "--collective-timeout" in line
                            for line in errors), err)
        self.check_checkpoint_loads(run)


def main():
    global UNET, WORK
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    UNET = os.path.abspath(sys.argv[1])
    if shutil.which("mpirun") is None:
        print("error: mpirun not found (tools/setup.sh installs openmpi-bin)", file=sys.stderr)
        return 1
    WORK = tempfile.mkdtemp(prefix="unet-distributed-")
    try:
        program = unittest.main(argv=[sys.argv[0], *sys.argv[2:]], exit=False, verbosity=2)
        return 0 if program.result.wasSuccessful() else 1
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
