"""The checks of experiments/generative_benchmark.py (issue 17's "Done means") pass and fail on the numbers they
are about, and its table cells say mean ± std over a population's seeds."""
import importlib.util
import os

import pytest

from conftest import ROOT


@pytest.fixture(scope='module')
def bench():
  spec = importlib.util.spec_from_file_location('generative_benchmark',
                                                os.path.join(ROOT, 'experiments', 'generative_benchmark.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _metrics(fd, precision=0.5, recall=0.5):
  return {'fd_classifier': fd, 'precision': precision, 'recall': recall, 'density': 1.0, 'coverage': 0.5}


def _results(vamp_nll=(95.0, 96.0), vae_nll=(100.0, 101.0), iaf_elbo=104.0, rae_gmm=20.0):
  runs = lambda nll, elbo: [{'test/nll': x, 'test/neg_elbo': elbo} for x in nll]  # noqa: E731
  return {'vae': {'summaries': runs(vae_nll, 105.0), 'samplers': {}},
          'vamp': {'summaries': runs(vamp_nll, 103.0), 'samplers': {}},
          'vae_iaf': {'summaries': runs((99.0, 100.5), iaf_elbo), 'samplers': {}},
          'rae': {'summaries': [{}], 'samplers': {'normal': _metrics(300.0), 'gmm': _metrics(rae_gmm)}},
          'vqvae': {'summaries': [{}], 'samplers': {'pixelcnn': _metrics(40.0), 'uniform_codes': _metrics(400.0)}}}


REFS = {'training split (2,000)': _metrics(7.0, 0.95, 0.93), 'whole training split (8,000)': _metrics(6.0, 0.96, 0.94),
        'uniform noise': _metrics(2500.0, 0.0, 0.0)}


def test_checks_pass_on_numbers_that_meet_issue_17(bench):
  lines = bench.checks(_results(), REFS)
  assert len(lines) == 7 and all('**PASS**' in line for line in lines), lines
  assert 'vamp test NLL 95.50 < vae 100.50 nats (mean over 2 seeds; lower for 2 of 2 seeds' in lines[0]
  assert 'largest NLL - negative ELBO is -3.50 nats (vae_iaf)' in lines[2]
  assert '10.0 times lower' in lines[4]


def test_checks_fail_where_a_number_breaks_them(bench):
  refs = {**REFS, 'whole training split (8,000)': _metrics(6.0, 0.88, 0.93)}
  lines = bench.checks(_results(vamp_nll=(99.0, 102.0), iaf_elbo=100.0, rae_gmm=400.0), refs)
  failed = [line.split('**: ')[1].split(' ')[:2] for line in lines if '**FAIL**' in line]
  assert failed == [['vamp', 'test'], ['every', 'test'], ['rae', 'fd_classifier'], ['the', 'whole']], lines
  assert 'lower for 1 of 2 seeds' in lines[0]  # 99 < 100 but 102 > 101
  assert 'largest NLL - negative ELBO is 0.50 nats (vae_iaf)' in lines[2]


def test_cells_give_mean_and_std_over_seeds(bench):
  assert bench._over_seeds([{'test/nll': 100.0}, {'test/nll': 102.0}], 'test/nll', 2) == '101.00 ± 1.00'
  assert bench._over_seeds([{'test/nll': 100.0}], 'test/nll', 1) == '100.0'
  assert bench._over_seeds([{}], 'test/nll', 2) == '-'


def test_precision_recall_check_is_on_the_whole_training_split(bench):
  """Issue 17 names the test set against the training set: the whole training split decides the check, the
  subset of as many images as samples is stated beside it (and decides the fd_classifier check)."""
  refs = {**REFS, 'training split (2,000)': {**_metrics(7.0, 0.88, 0.89), 'num': 2000},
          'whole training split (8,000)': {**_metrics(6.0, 0.93, 0.91), 'num': 8000, 'precision_k3': 0.85,
                                           'recall_k3': 0.84}}
  line = [x for x in bench.checks(_results(), refs) if 'against the test split' in x][0]
  assert '**PASS**' in line and 'whole training split (8,000 images) against the test split' in line, line
  assert 'precision 0.930, recall 0.910 at k = 5; at k = 3: 0.850, 0.840' in line, line  # k = 3 shown, not judged
  assert 'a subset of 2,000 images of the training split: precision 0.880, recall 0.890 at k = 5' in line, line
  refs['whole training split (8,000)'] = {**_metrics(6.0, 0.93, 0.89), 'num': 8000}
  refs['training split (2,000)'] = {**_metrics(7.0, 0.95, 0.95), 'num': 2000}
  line = [x for x in bench.checks(_results(), refs) if 'against the test split' in x][0]
  assert '**FAIL**' in line, line
  fd_line = bench.checks(_results(), {**refs, 'training split (2,000)': {**_metrics(200.0), 'num': 2000}})[-1]
  assert '**FAIL**' in fd_line and "2,000 training images' fd_classifier 200.00" in fd_line, fd_line
