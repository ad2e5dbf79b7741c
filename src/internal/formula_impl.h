/* internal/formula_impl.h — the formula front end's syntax tree and its passes, shared by
 * src/formula/parse.c (text to tree), design.c (tree and data to design matrices) and
 * regression.c (the model). Not installed.
 *
 * One tree serves both of R's readings of the same characters: at the top of a formula `+`,
 * `-`, `*`, `/`, `:` and `^` combine terms (Chambers & Hastie 1992, "Statistical Models in S",
 * ch. 2), while inside a function call (`log(x + 1)`, `I(x^2)`) they are arithmetic. The parser
 * records the operators; the pass that reads the tree decides which reading applies.
 */
#ifndef EMBER_INTERNAL_FORMULA_IMPL_H
#define EMBER_INTERNAL_FORMULA_IMPL_H

#include "ember/formula.h"

typedef enum fnode_kind {
    FN_NUM,   /* a number */
    FN_VAR,   /* a column name */
    FN_CALL,  /* name(args): log, exp, sqrt, I, scale, factor, offset, trials, weights */
    FN_BIN,   /* l op r, op one of + - * / : ^ */
    FN_NEG,   /* -a */
    FN_GROUP, /* (lhs | g) or (lhs || g): a group-level term */
} fnode_kind;

typedef struct fnode fnode;
struct fnode {
    fnode_kind kind;
    int col;        /* 1-based column in the formula text, for messages */
    char op;        /* FN_BIN */
    int uncorrelated; /* FN_GROUP: || */
    double num;     /* FN_NUM */
    char *name;     /* FN_VAR, FN_CALL */
    fnode *a, *b;   /* FN_BIN, FN_NEG (a), FN_GROUP (a: terms, b: grouping factor) */
    fnode **args;   /* FN_CALL */
    int nargs;
};

struct em_formula {
    char *text;
    fnode *response;   /* the response expression (y, or log(y)) */
    fnode **addition;  /* trials(n), weights(w), ... after '|' on the left */
    int naddition;
    fnode *rhs;
};

void em_fnode_free(fnode *n);
/* R's deparse of an expression as model.matrix names columns: "x", "log(x + 1)", "I(x^2)". */
void em_fnode_deparse(const fnode *n, em_buf *b);
/* Error at a node: "formula: <what> at column <c>\n  <text>\n  <caret>". */
em_status em_formula_error_at(em_error *err, em_status s, const char *text, int col, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

#endif

/* ---- a formula against a data frame (design.c) ---------------------------------------------- */

#include "ember/io.h"

/* One group-level term (lhs | g): K columns per row, a grouping factor of J levels. */
typedef struct em_group_term {
    char *group;         /* the grouping factor's name as brms writes it: "county", "a:b" */
    size_t J;            /* its levels */
    char **levels;       /* [J] level labels ("A", "A_x" for a:b) */
    size_t *index;       /* [n] each row's level */
    size_t K;            /* terms */
    char **names;        /* [K] brms term names: "Intercept", "x" */
    double *Z;           /* [K][n] column-major: term k of every row */
    int correlated;      /* (lhs | g) with K >= 2: an LKJ correlation */
} em_group_term;

/* What the training data fixed about a variable, so new data are coded the same way: a
 * factor's levels (their order gives the columns), or a scale()'s training mean and sd. */
typedef struct em_coded_var {
    char *label;         /* the deparsed expression: "trt", "factor(dose)", "scale(x)" */
    int is_factor;
    size_t nlevels;
    char **levels;
    double mean, sd;     /* scale() */
} em_coded_var;

typedef struct em_design {
    size_t n;            /* rows used */
    size_t dropped;      /* rows dropped for a missing value */
    size_t *rows;        /* [n] the frame row of each used row */
    double *y;           /* [n] the response */
    double *trials;      /* [n] binomial trials, or NULL */
    double *weights;     /* [n] weights(w): each row's log-likelihood multiplied by it, or NULL */
    double *offset;      /* [n] summed offsets, or NULL */
    int intercept;
    size_t P;            /* population-level columns (no intercept column) */
    char **names;        /* [P] model.matrix names: "x", "TrtB", "x:TrtB" */
    double *X;           /* [n][P] row-major, uncentred */
    double *Xc;          /* [n][P] centred when there is an intercept (brms), else = X */
    double *means;       /* [P] column means subtracted */
    size_t ngroups;
    em_group_term *groups;
    char *response_name; /* deparsed response */
    size_t ncoded;       /* the coding of the training data (empty in a design for new data) */
    em_coded_var *coded;
} em_design;

/* Build the design of formula f on frame fr for a family; err names the place of any problem. */
em_status em_design_build(const em_formula *f, const em_frame *fr, em_family fam, int drop_missing, em_design *out,
                          em_error *err);
/* The design of f on new data fr coded as train codes its data (train built by em_design_build
 * from the same formula): factor levels and their order, scale()'s mean and sd and the centring
 * means from the training data; offsets, trials() and the grouping factors' labels from fr
 * (the groups' levels are fr's own; matching them to train's is the caller's). The response
 * is not read (y is NULL). A factor level that train did not have is EM_ERR_ARG naming the
 * file, line, column and value. */
em_status em_design_build_new(const em_formula *f, const em_frame *fr, em_family fam, const em_design *train,
                              int drop_missing, em_design *out, em_error *err);
void em_design_free(em_design *d);
/* The parts of a regression that prediction reads (regression.c; predict.c): its formula, its
 * training design and the last fit in the model's own names (NULL before a fit). */
const em_formula *em_regression_formula_of(const em_regression *r);
const em_design *em_regression_design_of(const em_regression *r);
const em_posterior *em_regression_internal_fit(const em_regression *r);
/* brms's rename of a coefficient: spaces and ( ) [ ] , " ' ? removed, + - * / ^ = as P M MU D E EQ. */
void em_brms_rename(const char *name, em_buf *out);
