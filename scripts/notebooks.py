#!/usr/bin/env python3
"""notebooks.py — build notebooks-export/ from a real run of the Bayesian-regression example,
and check that the exported notebooks still hold what the current code prints.

  notebooks.py build --bin examples/bayesian_regression/rugged --out notebooks-export
  notebooks.py check --bin examples/bayesian_regression/rugged --dir notebooks-export

build runs the example once (in a temporary folder holding a copy of the data, so that the
printed paths are the same as in `make run`), then writes bayesian_regression.ipynb and
bayesian_regression_ii.ipynb (nbformat 4, validated), a Markdown rendering of each, and the
figures they show into figures/. Code cells are excerpts of the real source files; outputs are
the run's printed sections. The example's arguments are recorded in each notebook's metadata.

check validates both notebooks, re-runs the example with the recorded arguments, rebuilds the
notebooks in memory and compares every printed output (stream outputs and the checked file
excerpts) with what is stored: they must be identical. Figures are not compared byte for byte
(their numbers are the printed ones), code cells that drifted from the sources are reported as
warnings. Uses only the standard library and python3-nbformat.
"""
import argparse
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

EX = "examples/bayesian_regression"
RUN_ARGS = ["--seed", "1", "--no-timing", "--quiet"]
ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


# ---- running the example -----------------------------------------------------------------------


NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def last_digit_only(a, b):
    """True when a and b are the same text except for decimal numbers printed with the same
    digits after the point (and the same exponent) that differ by at most one unit in that
    place. Integers (counts) must be equal."""
    if NUMBER.split(a) != NUMBER.split(b):
        return False
    for x, y in zip(NUMBER.findall(a), NUMBER.findall(b)):
        if x == y:
            continue
        mx, _, ex = x.lower().partition("e")
        my, _, ey = y.lower().partition("e")
        places = len(mx.partition(".")[2])
        if ex != ey or places == 0 or places != len(my.partition(".")[2]):  # counts stay exact
            return False
        if abs(float(mx) - float(my)) > 1.5 * 10.0 ** -places:
            return False
    return True


def run_example(binary, args):
    """Run the example in a fresh folder with data/rugged_data.csv; return (stdout, folder)."""
    work = tempfile.mkdtemp(prefix="ember-notebooks-")
    os.makedirs(os.path.join(work, "data"))
    shutil.copy(os.path.join(ROOT, EX, "data", "rugged_data.csv"), os.path.join(work, "data"))
    proc = subprocess.run([os.path.abspath(binary)] + args, cwd=work, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)
    if proc.returncode != 0:
        sys.exit("notebooks.py: the example failed (exit %d):\n%s" % (proc.returncode, proc.stderr))
    return proc.stdout, work


def sections(stdout):
    """The report's sections, by title: the lines from '=== title ===' to the next one."""
    out, title, lines = {}, None, []
    for line in stdout.splitlines():
        m = re.match(r"^=== (.*) ===$", line)
        if m:
            if title is not None:
                out[title] = "\n".join(lines).strip("\n") + "\n"
            title, lines = m.group(1), [line]
        elif title is not None:
            lines.append(line)
    if title is not None:
        out[title] = "\n".join(lines).strip("\n") + "\n"
    return out


# ---- excerpts of the source files ------------------------------------------------------------------

def source(name):
    with open(os.path.join(ROOT, EX, name)) as f:
        return f.read().splitlines()


def function(name, start):
    """The function whose definition starts with `start` at column 0, with the comment above it."""
    lines = source(name)
    i = next(k for k, l in enumerate(lines) if l.startswith(start))
    j = i
    if j > 0 and lines[j - 1].rstrip().endswith("*/"):
        while j > 0 and not lines[j - 1].lstrip().startswith("/*"):
            j -= 1
        j -= 1
    end = next(k for k in range(i, len(lines)) if lines[k] == "}")
    return "\n".join(lines[j:end + 1])


def block(name, start, end):
    """Lines from the first containing `start` to the next containing `end`, dedented."""
    lines = source(name)
    i = next(k for k, l in enumerate(lines) if start in l)
    e = next(k for k in range(i, len(lines)) if end in lines[k])
    chunk = lines[i:e + 1]
    indent = min(len(l) - len(l.lstrip()) for l in chunk if l.strip())
    return "\n".join(l[indent:] for l in chunk)


def file_head(folder, name, n, width=150):
    with open(os.path.join(folder, "out", name)) as f:
        lines = [next(f).rstrip("\n") for _ in range(n)]
    return "\n".join(l if len(l) <= width else l[:width] + " ..." for l in lines) + "\n"


# ---- the notebooks' content -------------------------------------------------------------------------

COMMAND = "cd examples/bayesian_regression && ./rugged " + " ".join(RUN_ARGS)

INTRO_RUN = (
    "Every output and figure below comes from one run of the example program, `make notebooks`, "
    "which executes\n\n```\n%s\n```\n\nand builds this file from what it prints. The code cells are "
    "excerpts of the real source files in `examples/bayesian_regression/`; they are not executable "
    "one by one (the program runs them in order), and each cell's output is the part of the "
    "program's report that the code produced. `tests/test_notebooks.sh` re-runs the program with "
    "the arguments recorded in this notebook's metadata and checks that the outputs here are still "
    "exactly what the code prints. `make run` prints the same report (plus timings)." % COMMAND)


def part1(sec, run_dir):
    return [
        ("md", "# Bayesian Regression – Introduction (Part 1), in C with Ember\n\n"
               "A reproduction of Pyro's tutorial *Bayesian Regression – Introduction (Part 1)* with "
               "Ember, a C library for probabilistic programming. We fit a Bayesian linear regression "
               "by stochastic variational inference (SVI), look at the regression line and the "
               "predictive intervals, and answer the tutorial's question: how does a nation's income "
               "relate to the ruggedness of its terrain, inside and outside Africa?\n\n" + INTRO_RUN +
               "\n\nThe companion notebook `bayesian_regression_ii` follows Part 2: other guides, NUTS, "
               "the exact posterior and a calibration check."),
        ("md", "## The data\n\n"
               "Nunn and Puga (2012, *Ruggedness: the blessing of bad geography in Africa*) relate a "
               "country's terrain ruggedness to its income. Rugged land makes farming and transport "
               "costly, so rugged countries tend to be poorer; within Africa, however, the relation "
               "is reversed, which the authors trace to rugged terrain having offered protection "
               "from the slave trades. As in the tutorial we use three columns of their data: "
               "`rgdppc_2000` (real GDP per capita in 2000), `rugged` (the terrain ruggedness index) "
               "and `cont_africa` (1 for African nations). GDP is modelled on the log scale, and "
               "rows without a GDP value are dropped. The loader is part of the example:"),
        ("code", function("rugged_model.c", "em_status rugged_data_load("), [("section", "Data")]),
        ("md", "## The model\n\n"
               "Log GDP is regressed on ruggedness, with a separate intercept and a separate slope for "
               "African nations:\n\n"
               "$$\\log \\mathrm{GDP}_i \\sim \\mathcal{N}\\left(a + b_A A_i + b_R R_i + b_{AR} A_i R_i,\\ "
               "\\sigma\\right),$$\n\n"
               "with $A_i$ = `cont_africa` and $R_i$ = `rugged`, and the tutorial's priors "
               "$a \\sim \\mathcal{N}(0, 10)$, $b_A, b_R, b_{AR} \\sim \\mathcal{N}(0, 1)$, "
               "$\\sigma \\sim \\mathrm{Uniform}(0, 10)$. Part 1 writes this as a `PyroModule` whose "
               "`nn.Linear` weights receive priors (`linear.bias` is our `a`, `linear.weight` is "
               "`(bA, bR, bAR)`); Part 2 writes it as a plain function with the names used here.\n\n"
               "In Ember a model is a C function. `em_sample` declares a latent variable with its "
               "prior, `em_observe` conditions on the data inside a plate of independent rows, and "
               "`em_deterministic` records the regression line so that predictions can return it. "
               "The inference engines change what each site does by installing effect handlers, so "
               "the same function serves SVI, NUTS and prediction."),
        ("code", function("rugged_model.c", "void rugged_model("), [("section", "Model")]),
        ("md", "## Stochastic variational inference with an autoguide\n\n"
               "SVI approximates the posterior by a member of a simple family $q$, tuned to maximise "
               "the evidence lower bound $\\mathrm{ELBO} = \\log p(y) - \\mathrm{KL}(q \\,\\|\\, "
               "p(\\cdot \\mid y))$ by stochastic gradient steps. Part 1 uses the autoguide "
               "`AutoDiagonalNormal`: it maps every parameter to the real line ($\\sigma$ through "
               "$\\mathrm{logit}(\\sigma/10)$) and puts an independent Normal on each coordinate. As "
               "in the tutorial: Adam with learning rate 0.03, the Trace ELBO with one sample per "
               "step, 1500 steps, and the loss printed every 100 steps divided by the number of rows. "
               "The three SVI fits of the two notebooks are described by one table each and run by "
               "the same routine:"),
        ("code", block("rugged.c", "const svi_spec specs[3] = {", "};") + "\n\n" +
                 function("fits.c", "em_status svi_fit_run("), [("section", "Part 1: SVI with AutoDiagonalNormal")]),
        ("md", "The loss drops and then fluctuates: each step estimates the ELBO from a single draw of "
               "$q$, so the printed values are noisy (Pyro's run ended at 1.4581 per row). After the "
               "last step the −ELBO of the fitted guide is estimated precisely from 2000 draws. This "
               "model's exact log evidence can be computed (Part 2 explains how), so the gap between "
               "the two is the KL divergence from the guide to the true posterior: the cost of "
               "treating the parameters as independent.\n\n"
               "`loc` and `scale` are the guide's means and standard deviations on the unconstrained "
               "space; the quantiles are those Normals' quantiles pushed through each parameter's "
               "transform, as Pyro's `guide.quantiles()` prints them. Ember's autoguides keep their "
               "scales positive through exp where Pyro uses softplus: the family is the same, only "
               "the optimiser's path differs. Random numbers come from GSL generators, so results "
               "agree with Pyro's in distribution, not draw for draw."),
        ("md", "## The regression line and the predictive distribution\n\n"
               "To evaluate the fit we draw 800 parameter sets from the guide and run the model "
               "forward once per draw with the parameters fixed (`em_predictive_posterior`, like "
               "Pyro's `Predictive`). The deterministic site `mean` gives the regression line, and the "
               "observation site `obs` gives a simulated new log GDP, which adds the noise $\\sigma$. "
               "Both are evaluated on a grid of ruggedness values for each group (Pyro evaluates them "
               "at the observed countries, hence its jagged curves) and summarised by their mean and "
               "5% and 95% quantiles. On the grid the new observations of one posterior draw share "
               "one noise draw (common random numbers): every point keeps its distribution, and the "
               "band's edges come out as smooth curves."),
        ("code", function("predict.c", "em_status predict_bands("), []),
        ("figure", "regression_line_svi", "Regression line with its 90% band (SVI)"),
        ("md", "The 90% band of the regression line is narrow, and most nations lie outside it. That "
               "is expected: it expresses uncertainty about the *average* log GDP at a given "
               "ruggedness, while individual nations scatter around the line with standard deviation "
               "$\\sigma \\approx 0.95$. The posterior predictive interval includes that scatter:"),
        ("figure", "predictive_svi", "Posterior predictive 90% interval (SVI)"),
        ("md", "Now most points fall inside the band. Part 2 checks on held-out nations that the "
               "share inside is close to 90%.\n\n"
               "## The slopes inside and outside Africa\n\n"
               "The tutorial's question is the slope of log GDP on ruggedness: $b_R$ outside Africa "
               "and $b_R + b_{AR}$ inside. Every posterior draw gives one value of each; their "
               "densities (histograms with kernel density estimates) are below, and their means and "
               "90% intervals are printed at the end of the Part 1 output above."),
        ("figure", "slope_density_svi", "Density of the slope inside and outside Africa (SVI)"),
        ("md", "The two distributions hardly overlap: ruggedness goes with lower income outside "
               "Africa and with higher income inside it. But the mean-field guide is overconfident: "
               "Part 2 shows that NUTS and the exact posterior give noticeably wider distributions "
               "for both slopes.\n\n"
               "## Left out\n\n"
               "Part 1 begins with a non-Bayesian fit (least squares by gradient descent in PyTorch) "
               "and ends by exporting the predictive model with TorchScript; neither has a "
               "counterpart here. Quantiles are interpolated as R's default (type 7), whereas Part 1 "
               "takes order statistics of its 800 draws."),
    ]


def part2(sec, run_dir):
    return [
        ("md", "# Bayesian Regression – Inference Algorithms (Part 2), in C with Ember\n\n"
               "A reproduction of Pyro's tutorial *Bayesian Regression – Inference Algorithms "
               "(Part 2)* with Ember. The model and data are those of Part 1 (notebook "
               "`bayesian_regression`). Here we fit it three more ways — SVI with a hand-written "
               "mean-field guide, Hamiltonian Monte Carlo with NUTS, and SVI with a full-rank Gaussian "
               "guide — compare them with the exact posterior, and check on held-out data that the "
               "predictive intervals are calibrated.\n\n" + INTRO_RUN),
        ("md", "## The model\n\nAs in Part 1:"),
        ("code", function("rugged_model.c", "void rugged_model("), []),
        ("md", "## A hand-written guide\n\n"
               "A guide is itself a model function. `em_param` declares a learnable parameter with a "
               "constraint (positive ones are optimised on the log scale), and `em_sample` draws each "
               "latent site of the model under the same name. This guide mirrors Part 2's: "
               "independent Normals for $a$ and the three slopes with learnable locations and scales, "
               "and a Normal with a learnable location but a fixed scale of 0.05 for $\\sigma$. "
               "(That Normal is not restricted to $\\sigma$'s support $(0, 10)$; with $\\sigma$ near "
               "0.95 a draw outside does not happen in practice, and Ember would skip and count such "
               "a step rather than fail.) Adam with learning rate 0.05 and 5000 steps, with the "
               "total −ELBO printed every 500 steps, as in the tutorial."),
        ("code", function("fits.c", "void part2_guide("),
         [("section", "Part 2: SVI with a hand-written mean-field guide")]),
        ("md", "The standard deviation of $\\sigma$ is about 0.05 by construction. The other standard "
               "deviations are too small, as the comparison below shows.\n\n"
               "## NUTS\n\n"
               "Hamiltonian Monte Carlo moves through the parameter space by simulating a particle on "
               "the surface of the negative log posterior; the No-U-Turn sampler (Hoffman and Gelman, "
               "2014) chooses the length of each trajectory itself. Ember's sampler is Stan's "
               "multinomial variant with Stan's warmup: the step size is tuned by dual averaging "
               "towards a mean acceptance statistic of 0.8, and a diagonal metric is estimated from "
               "the warmup draws in expanding windows. Pyro's Part 2 runs one chain of 1000 draws "
               "after 200 warmup iterations; we run Stan's default of four chains of 1000 draws after "
               "1000 warmup iterations, so that R-hat can compare the chains "
               "(`--chains 1 --warmup 200` gives Pyro's setting). The chains run on threads, each "
               "with its own random-number stream, so the draws do not depend on the thread count."),
        ("code", function("fits.c", "em_status nuts_run("), [("section", "Part 2: NUTS")]),
        ("md", "How to read this: `ess_bulk` and `ess_tail` are effective sample sizes for the centre "
               "and the tails of each marginal (how many independent draws the 4000 correlated ones "
               "are worth), and `r_hat` compares the chains with each other; values within about "
               "0.01 of 1 mean they agree (Vehtari et al., 2021, as computed by R's `posterior` "
               "package). Divergent transitions would flag regions of high curvature the sampler "
               "cannot explore, and an E-BFMI below 0.3 poor exploration of the energy. The trace "
               "plots show well-mixed chains:"),
        ("figure", "trace_nuts", "Trace plots of the four NUTS chains"),
        ("md", "## Full-rank SVI\n\n"
               "`AutoMultivariateNormal` places one Gaussian with a full covariance (through a "
               "triangular factor) on the five unconstrained coordinates, so it can follow "
               "correlations between parameters. As in the tutorial: Adam with learning rate 0.01, "
               "5000 steps, starting from the prior means."),
        ("code", block("rugged.c", "const svi_spec specs[3] = {", "};"),
         [("section", "Part 2: SVI with AutoMultivariateNormal")]),
        ("md", "## Comparing the posteriors\n\n"
               "The marginal densities of the mean-field guide against NUTS: the guide is centred in "
               "the right place but too narrow for the coefficients."),
        ("figure", "marginals_diag_vs_nuts", "Marginal posteriors: SVI (AutoDiagonalNormal) vs NUTS"),
        ("md", "The joint densities of two pairs of coefficients show why. The posterior (NUTS, shaded) "
               "is tilted: $b_A$ and $b_R$ are positively correlated, $b_R$ and $b_{AR}$ negatively. "
               "The diagonal guide (contour lines) can only place axis-aligned ellipses, and the "
               "ELBO makes it fit inside the posterior rather than cover it:"),
        ("figure", "cross_sections_diag_vs_nuts", "Cross-sections: NUTS vs SVI (AutoDiagonalNormal)"),
        ("md", "The full-rank guide matches NUTS closely, in the marginals and in the joint densities:"),
        ("figure", "marginals_mvn_vs_nuts", "Marginal posteriors: SVI (AutoMultivariateNormal) vs NUTS"),
        ("figure", "cross_sections_mvn_vs_nuts", "Cross-sections: NUTS vs SVI (AutoMultivariateNormal)"),
        ("md", "For this model the posterior can also be computed exactly, without sampling: given "
               "$\\sigma$, the coefficients have Normal priors and a Normal likelihood, so their "
               "conditional posterior is Normal in closed form, and $\\sigma$ can be integrated out "
               "numerically on a fine grid. That gives a reference for every method and the log "
               "evidence used in Part 1:"),
        ("code", function("exact.c", "em_status exact_compute("), [("section", "SVI vs NUTS")]),
        ("md", "NUTS agrees with the exact posterior to within Monte Carlo error, and so does the "
               "full-rank guide. The two mean-field guides find the right means but standard "
               "deviations roughly half the true ones: the posterior has strong correlations (for "
               "example between the intercept $a$ and the slope $b_R$: a line that falls faster "
               "must start higher), and a product of independent Normals can only fit such a posterior by "
               "shrinking. This is the tutorial's main lesson about mean-field variational inference."),
        ("md", "## The answer\n\n"
               "The program ends its analysis by stating the answer to the tutorial's question from "
               "the NUTS posterior, as a probability and an interval for each slope, and by how "
               "much the mean-field guide of Part 1 understates the uncertainty:"),
        ("code", function("report.c", "void print_answer("), [("section", "Answer")]),
        ("md", "## Is the uncertainty honest? Calibration on held-out nations\n\n"
               "A posterior's predictive intervals can be checked against data it has not seen. We "
               "split the 170 nations into 10 folds at random, refit the model on nine folds, "
               "predict the held-out fold, and count how often the central 50% and 90% predictive "
               "intervals of a new observation contain the observed log GDP. For a calibrated "
               "model those shares should be close to 50% and 90% (with 170 nations, a binomial "
               "standard error of about 4 and 2 percentage points). The refits use fewer NUTS draws "
               "than the main fit, which is plenty for interval endpoints. The counting, per "
               "held-out nation:"),
        ("code", function("crossval.c", "static void count("),
         [("section", "Calibration: 10-fold cross-validation")]),
        ("md", "The 90% predictive intervals cover close to 90% of the held-out nations, for NUTS "
               "and also for the mean-field guide: the predictive spread is dominated by $\\sigma$, "
               "which every method estimates well. The 50% intervals cover somewhat less than half, "
               "with both methods. That points at the model rather "
               "than the inference: the residuals of log GDP around the line are spread more evenly "
               "than a Normal (their kurtosis is about 2.2, against 3), so a Normal likelihood puts "
               "too much of its mass near the line. A noise model with a separate spread for each "
               "group, or a flatter error distribution, would be the next thing to try. The 90% band of the regression line covers "
               "only a small share, which is right: it is a statement about the mean, not about "
               "nations. The NUTS predictive interval on the full data:"),
        ("figure", "predictive_nuts", "Posterior predictive 90% interval (NUTS)"),
        ("md", "## Model comparison: PSIS-LOO\n\n"
               "Does the interaction earn its place, and would heavier-tailed errors predict better? "
               "Three models are fitted by NUTS: the tutorial's, the same without the interaction "
               "$b_{AR}$, and the tutorial's with Student-t errors. Each is scored by PSIS-LOO "
               "(Vehtari, Gelman & Gabry 2017): the expected log predictive density of a nation left "
               "out, estimated from the one fit by Pareto-smoothed importance sampling, with each "
               "observation's Pareto $\\hat k$ saying whether the estimate can be trusted (any above "
               "0.7 would be refitted exactly). The output is what R's `loo` and `loo_compare` print:"),
        ("code", function("compare.c", "em_status compare_models("),
         [("section", "Model comparison: PSIS-LOO")]),
        ("md", "The interaction model predicts best; dropping the interaction costs about 3 points of "
               "elpd with a standard error of about the same size, so the data favour the interaction "
               "without settling it. Student-t errors do not help: these residuals are not "
               "heavy-tailed (if anything lighter-tailed than a Normal, as the calibration above "
               "found)."),
        ("md", "## Files for other tools\n\n"
               "The program writes the draws, summaries, predictive bands and the calibration table "
               "as CSV files, with the NUTS chains in CmdStan's layout so that the Stan ecosystem "
               "(R's `posterior` and `cmdstanr`, Python's `cmdstanpy` and ArviZ) can read them "
               "directly:"),
        ("code", function("chains.c", "em_status write_nuts_chains("), [("section", "Files")]),
        ("md", "The top of `out/nuts_chain_1.csv` (long lines cut): the configuration comments, the "
               "column header, the adaptation block with the step size and the inverse metric, then "
               "one row per draw with 17 significant digits. In R: "
               "`posterior::as_draws(read.csv(\"out/nuts_chain_1.csv\", comment.char = \"#\"))`."),
        ("text", "nuts_chain_1.csv", 42),
    ]


# ---- building ----------------------------------------------------------------------------------

def build_notebook(kind, cells, sec, run_dir, need_png=True):
    """The notebook object, plus the figures it uses (name -> path of the PNG). Without need_png
    (checking) a figure the run did not draw gets an empty attachment."""
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "c", "display_name": "C", "language": "c"},
        "language_info": {"name": "c", "file_extension": ".c", "mimetype": "text/x-csrc"},
        "ember": {"program": EX + "/rugged", "args": RUN_ARGS, "command": COMMAND,
                  "generated_by": "make notebooks (scripts/export-notebooks.sh)",
                  "checked_by": "tests/test_notebooks.sh"},
    }
    figures = {}
    count = 0
    for k, c in enumerate(cells):
        cid = "%s-%02d" % (kind, k)
        if c[0] == "md":
            nb.cells.append(new_markdown_cell(c[1], id=cid))
        elif c[0] == "code":
            count += 1
            outputs, meta = [], []
            for o in c[2]:
                if o[1] not in sec:
                    sys.exit("notebooks.py: the report has no section '%s'" % o[1])
                outputs.append(new_output("stream", name="stdout", text=sec[o[1]]))
                meta.append(o[1])
            cell = new_code_cell(c[1], id=cid, execution_count=count, outputs=outputs)
            if meta:
                cell.metadata["ember_sections"] = meta
            nb.cells.append(cell)
        elif c[0] == "figure":
            name, caption = c[1], c[2]
            png = os.path.join(run_dir, "out", "figures", name + ".png")
            if os.path.exists(png):
                with open(png, "rb") as f:
                    data = base64.b64encode(f.read()).decode("ascii")
            elif need_png:
                sys.exit("notebooks.py: the run drew no %s.png (is gnuplot installed?)" % name)
            else:
                data = ""
            cell = new_markdown_cell("![%s](attachment:%s.png)" % (caption, name), id=cid)
            cell.attachments = {name + ".png": {"image/png": data}}
            cell.metadata["ember_figure"] = name
            nb.cells.append(cell)
            figures[name] = png
        elif c[0] == "text":
            text = file_head(run_dir, c[1], c[2])
            cell = new_markdown_cell("```\n" + text + "```", id=cid)
            cell.metadata["ember_file"] = {"name": c[1], "lines": c[2]}
            nb.cells.append(cell)
    nbformat.validate(nb)
    return nb, figures


def markdown(nb):
    """A Markdown rendering of a notebook built above (figures from figures/)."""
    parts = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            src = cell.source
            if "ember_figure" in cell.metadata:
                src = re.sub(r"\(attachment:([^)]+)\)", r"(figures/\1)", src)
            parts.append(src)
        else:
            parts.append("```c\n" + cell.source + "\n```")
            for o in cell.outputs:
                parts.append("Output:\n\n```\n" + o.text + "```")
    return "\n\n".join(parts) + "\n"


NOTEBOOKS = [("bayesian_regression", "p1", part1), ("bayesian_regression_ii", "p2", part2)]


def cmd_build(args):
    stdout, run_dir = run_example(args.bin, RUN_ARGS)
    try:
        sec = sections(stdout)
        os.makedirs(os.path.join(args.out, "figures"), exist_ok=True)
        for name, kind, content in NOTEBOOKS:
            nb, figs = build_notebook(kind, content(sec, run_dir), sec, run_dir)
            for fig, png in figs.items():
                shutil.copy(png, os.path.join(args.out, "figures", fig + ".png"))
            write_atomic(os.path.join(args.out, name + ".ipynb"), nbformat.writes(nb) + "\n")
            write_atomic(os.path.join(args.out, name + ".md"), markdown(nb))
            print("notebooks.py: wrote %s/%s.ipynb and .md (%d cells, %d figures)"
                  % (args.out, name, len(nb.cells), len(figs)))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def checked_outputs(nb):
    """(cell id, text) of everything in nb that comes from the run's printed output or files."""
    out = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            for o in cell.outputs:
                out.append((cell.get("id"), o.get("text", "")))
        elif "ember_file" in cell.metadata:
            out.append((cell.get("id"), cell.source))
    return out


def cmd_check(args):
    failures = 0
    stored = {}
    for name, kind, content in NOTEBOOKS:
        path = os.path.join(args.dir, name + ".ipynb")
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)  # raises with the reason when invalid
        if not os.path.exists(os.path.join(args.dir, name + ".md")):
            print("FAIL: %s.md is missing" % name)
            failures += 1
        for cell in nb.cells:
            fig = cell.metadata.get("ember_figure")
            if fig and not os.path.exists(os.path.join(args.dir, "figures", fig + ".png")):
                print("FAIL: %s uses figures/%s.png, which is missing" % (name, fig))
                failures += 1
        stored[name] = nb
        print("ok: %s.ipynb is valid nbformat %d.%d (%d cells)" % (name, nb.nbformat, nb.nbformat_minor,
                                                                   len(nb.cells)))
    run_args = stored["bayesian_regression"].metadata["ember"]["args"]
    stdout, run_dir = run_example(args.bin, run_args)
    try:
        sec = sections(stdout)
        for name, kind, content in NOTEBOOKS:
            before = failures
            fresh, _ = build_notebook(kind, content(sec, run_dir), sec, run_dir, need_png=False)
            old, new = checked_outputs(stored[name]), checked_outputs(fresh)
            if len(old) != len(new):
                print("FAIL: %s has %d printed outputs, the current code gives %d" % (name, len(old), len(new)))
                failures += 1
            for (cid, a), (_, b) in zip(old, new):
                if a != b and last_digit_only(a, b):
                    print("note: %s cell %s: a printed number differs in its last digit only (a value at a rounding "
                          "boundary; OpenBLAS picks its kernels by CPU, which moves the last bits)" % (name, cid))
                elif a != b:
                    failures += 1
                    print("FAIL: %s cell %s differs from a fresh run with %s:" % (name, cid, " ".join(run_args)))
                    al, bl = a.splitlines(), b.splitlines()
                    for i in range(max(len(al), len(bl))):
                        x = al[i] if i < len(al) else "<none>"
                        y = bl[i] if i < len(bl) else "<none>"
                        if x != y:
                            print("  stored: %s\n  fresh:  %s" % (x, y))
                            break
            with open(os.path.join(args.dir, name + ".md")) as f:
                md = f.read()
            for cid, text in old:
                if text.strip() and text.strip() not in md:
                    print("FAIL: %s.md lacks the output of cell %s" % (name, cid))
                    failures += 1
            code_old = [c.source for c in stored[name].cells if c.cell_type == "code"]
            code_new = [c.source for c in fresh.cells if c.cell_type == "code"]
            if code_old != code_new:
                print("WARNING: %s: code cells differ from the current sources (run `make notebooks`)" % name)
            if failures == before:
                print("ok: %s: %d printed outputs identical to a fresh run" % (name, len(new)))
            else:
                print("FAIL: %s: the stored outputs are not what the current code prints; if the change is "
                      "intended, run `make notebooks`" % name)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 1 if failures else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd")
    b = sub.add_parser("build")
    b.add_argument("--bin", default=os.path.join(ROOT, EX, "rugged"))
    b.add_argument("--out", default=os.path.join(ROOT, "notebooks-export"))
    c = sub.add_parser("check")
    c.add_argument("--bin", default=os.path.join(ROOT, EX, "rugged"))
    c.add_argument("--dir", default=os.path.join(ROOT, "notebooks-export"))
    args = p.parse_args()
    if args.cmd == "build":
        cmd_build(args)
        return 0
    if args.cmd == "check":
        return cmd_check(args)
    p.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
