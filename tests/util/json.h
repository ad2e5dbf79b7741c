/* json.h — a small JSON reader for the tests' data files (posteriordb's data.json, info.json).
 *
 * It parses a whole document (RFC 8259: objects, arrays, numbers, strings, true/false/null)
 * into a tree, and offers the few accessors the tests need: look up a key, index an array,
 * read a number, and copy an array of numbers or a rectangular array of arrays of numbers into
 * a flat double buffer. It is strict (no comments, trailing commas, NaN or leading zeros) and
 * reports the first error with its line and column, so a damaged data file fails the test with
 * a readable message instead of feeding it wrong numbers. Nesting is limited to
 * TU_JSON_MAX_DEPTH so hostile input cannot exhaust the stack.
 */
#ifndef EMBER_TESTS_JSON_H
#define EMBER_TESTS_JSON_H

#include <stddef.h>

#define TU_JSON_MAX_DEPTH 64

typedef enum tu_json_type {
    TU_JSON_NULL = 0,
    TU_JSON_BOOL,
    TU_JSON_NUMBER,
    TU_JSON_STRING,
    TU_JSON_ARRAY,
    TU_JSON_OBJECT
} tu_json_type;

typedef struct tu_json tu_json;
struct tu_json {
    tu_json_type type;
    double number;   /* NUMBER; BOOL as 0 or 1 */
    char *string;    /* STRING: UTF-8, NUL-terminated (an embedded \u0000 is refused) */
    size_t len;      /* ARRAY, OBJECT: number of items; STRING: bytes */
    tu_json **items; /* ARRAY, OBJECT: the values in document order */
    char **keys;     /* OBJECT: the keys, parallel to items */
};

/* Parse n bytes of text. NULL on error, with "line L, column C: what" in err (errlen bytes). */
tu_json *tu_json_parse(const char *text, size_t n, char *err, size_t errlen);
/* Read and parse a file; the error names the path. */
tu_json *tu_json_read_file(const char *path, char *err, size_t errlen);
void tu_json_free(tu_json *j);

/* The value of key in an object (the last one if repeated), or NULL (also for a non-object). */
const tu_json *tu_json_get(const tu_json *obj, const char *key);
/* Item i of an array or object, or NULL out of range. */
const tu_json *tu_json_at(const tu_json *j, size_t i);
/* Items of an array or object; 0 for anything else. */
size_t tu_json_len(const tu_json *j);
/* The number, or NaN when j is NULL or not a number. */
double tu_json_number(const tu_json *j);
/* A path of object keys, e.g. tu_json_path(info, "reference_inference", "method_arguments",
 * "control", "adapt_delta", NULL); NULL when any step is missing. */
const tu_json *tu_json_path(const tu_json *j, ...);

/* Copy an array of numbers into a new malloc'd buffer (*out, *n values; free it). Returns 0,
 * or -1 with a message in err when j is not an array of numbers (naming the index). */
int tu_json_numbers(const tu_json *j, double **out, size_t *n, char *err, size_t errlen);
/* Copy an array of equally long arrays of numbers, row-major, into a new buffer. */
int tu_json_matrix(const tu_json *j, double **out, size_t *rows, size_t *cols, char *err,
                   size_t errlen);

#endif
