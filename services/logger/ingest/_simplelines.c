/* Runs of simple line-protocol lines, read as columns in one pass.
 *
 * The compiled twin of the regular expression in mapping.py (`_SIMPLE`): a
 * line is simple when it is ASCII of the form
 *
 *     key field=<float> <timestamp>[\r]
 *
 * with nothing escaped or quoted (the key's first character is none of
 * ` ,="\#`, the key holds no space, quote or backslash, the field key none of
 * ` ,="\`). It accepts no line the expression refuses, so a run it takes
 * converts exactly as the expression (and line by line) would.
 *
 * simple(text, scale, divide, max_us) -> (heads, index, times, values) or None
 *
 * `text` is the run (lines joined by "\n"); each time is
 * floor(timestamp * scale / divide), in [-max_us, max_us]. `heads` lists the
 * distinct "key field" texts in order of appearance; `index` (u32 per line),
 * `times` (i64) and `values` (f64, finite) are the columns as bytes, in
 * native byte order. None when any line is not simple, a number is out of
 * range or a value is not finite: the caller then reads the run line by line.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const char *at;
    Py_ssize_t len;
    uint32_t id; /* 0: empty slot, else position + 1 */
} Slot;

typedef struct {
    Slot *slots;
    size_t mask;
    uint32_t count;
} Heads;

/* Python's str.isspace() in ASCII, which is what `\s` matches there */
static int is_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static int is_key_char(unsigned char c) {
    return !is_space(c) && c != '"' && c != '\\';
}

static int is_field_char(unsigned char c) {
    return is_key_char(c) && c != ',' && c != '=';
}

static uint64_t hash_of(const char *at, Py_ssize_t len) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (Py_ssize_t k = 0; k < len; k++)
        h = (h ^ (unsigned char)at[k]) * 1099511628211ULL;
    return h;
}

static int heads_grow(Heads *heads) {
    size_t size = (heads->mask + 1) * 2;
    Slot *slots = PyMem_Calloc(size, sizeof(Slot));
    if (slots == NULL)
        return -1;
    for (size_t k = 0; k <= heads->mask; k++) {
        Slot s = heads->slots[k];
        if (s.id == 0)
            continue;
        size_t i = hash_of(s.at, s.len) & (size - 1);
        while (slots[i].id != 0)
            i = (i + 1) & (size - 1);
        slots[i] = s;
    }
    PyMem_Free(heads->slots);
    heads->slots = slots;
    heads->mask = size - 1;
    return 0;
}

/* The id (from 0) of the head at..at+len, a new one if unseen; -1 when out of memory. */
static int64_t heads_find(Heads *heads, const char *at, Py_ssize_t len) {
    size_t i = hash_of(at, len) & heads->mask;
    while (heads->slots[i].id != 0) {
        Slot *s = &heads->slots[i];
        if (s->len == len && memcmp(s->at, at, len) == 0)
            return s->id - 1;
        i = (i + 1) & heads->mask;
    }
    heads->slots[i] = (Slot){at, len, ++heads->count};
    int64_t id = heads->count - 1;
    if ((size_t)heads->count * 2 > heads->mask && heads_grow(heads) < 0)
        return -1;
    return id;
}

/* The end of a float as `_SIMPLE` reads one, from p; NULL if there is none. */
static const char *float_end(const char *p, const char *end) {
    if (p < end && (*p == '+' || *p == '-'))
        p++;
    const char *digits = p;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    int whole = p > digits;
    if (p < end && *p == '.') {
        const char *frac = ++p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (!whole && p == frac)
            return NULL;
    } else if (!whole) {
        return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const char *exp = p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == exp)
            return NULL;
    }
    return p;
}

/* Reads one line at..end into the columns; 0 if it is not simple or out of range. */
static int read_line(const char *at, const char *end, Heads *heads, uint32_t *index,
                     int64_t *time, double *value, int64_t scale, int64_t divide,
                     int64_t max_us) {
    if (end > at && end[-1] == '\r')
        end--;
    const char *p = at;
    if (p == end || !is_key_char(*p) || *p == ',' || *p == '=' || *p == '#')
        return 0;
    while (p < end && is_key_char(*p))
        p++;
    if (p == end || *p != ' ')
        return 0;
    const char *field = ++p;
    while (p < end && is_field_char(*p))
        p++;
    if (p == field || p == end || *p != '=')
        return 0;
    int64_t id = heads_find(heads, at, p - at);
    if (id < 0)
        return -1;
    const char *number = ++p;
    p = float_end(p, end);
    if (p == NULL || p == end || *p != ' ')
        return 0;
    char *stop;
    double v = PyOS_string_to_double(number, &stop, NULL);
    if ((v == -1.0 && PyErr_Occurred()) || stop != p) {
        PyErr_Clear();
        return 0;
    }
    if (!isfinite(v))
        return 0;
    p++;
    int negative = p < end && *p == '-';
    p += negative;
    const char *digits = p;
    while (p < end && *p == '0')
        p++;
    const char *significant = p;
    __int128 t = 0; /* 28 digits times any scale fit; more are out of range anyway */
    for (; p < end; p++) {
        if (*p < '0' || *p > '9' || p - significant >= 28)
            return 0;
        t = t * 10 + (*p - '0');
    }
    if (p == digits)
        return 0;
    t *= negative ? -scale : scale;
    __int128 q = t / divide;
    if (q * divide != t && t < 0)
        q--; /* floor, as Python's // */
    if (q < -max_us || q > max_us)
        return 0;
    *index = (uint32_t)id;
    *time = (int64_t)q;
    *value = v;
    return 1;
}

static PyObject *simple(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *text;
    long long scale, divide, max_us;
    if (!PyArg_ParseTuple(args, "ULLL", &text, &scale, &divide, &max_us))
        return NULL;
    if (scale < 1 || divide < 1) {
        PyErr_SetString(PyExc_ValueError, "scale and divide must be positive");
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(text))
        Py_RETURN_NONE; /* only ASCII lines are simple here */
    const char *data = (const char *)PyUnicode_DATA(text);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text);
    Py_ssize_t lines = 1;
    for (const char *p = data; (p = memchr(p, '\n', data + size - p)) != NULL; p++)
        lines++;
    PyObject *index = PyBytes_FromStringAndSize(NULL, lines * sizeof(uint32_t));
    PyObject *times = PyBytes_FromStringAndSize(NULL, lines * sizeof(int64_t));
    PyObject *values = PyBytes_FromStringAndSize(NULL, lines * sizeof(double));
    Heads heads = {PyMem_Calloc(64, sizeof(Slot)), 63, 0};
    PyObject *result = NULL;
    if (index == NULL || times == NULL || values == NULL || heads.slots == NULL)
        goto done;
    uint32_t *ix = (uint32_t *)PyBytes_AS_STRING(index);
    int64_t *ts = (int64_t *)PyBytes_AS_STRING(times);
    double *vs = (double *)PyBytes_AS_STRING(values);
    const char *at = data, *stop = data + size;
    for (Py_ssize_t n = 0; n < lines; n++) {
        const char *end = memchr(at, '\n', stop - at);
        if (end == NULL)
            end = stop;
        int ok = read_line(at, end, &heads, ix + n, ts + n, vs + n, scale, divide, max_us);
        if (ok < 0) {
            PyErr_NoMemory();
            goto done;
        }
        if (ok == 0) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        at = end + 1;
    }
    PyObject *names = PyList_New(heads.count);
    if (names == NULL)
        goto done;
    for (size_t k = 0; k <= heads.mask; k++) {
        Slot s = heads.slots[k];
        if (s.id == 0)
            continue;
        PyObject *name = PyUnicode_DecodeASCII(s.at, s.len, NULL);
        if (name == NULL) {
            Py_DECREF(names);
            goto done;
        }
        PyList_SET_ITEM(names, s.id - 1, name);
    }
    result = PyTuple_Pack(4, names, index, times, values);
    Py_DECREF(names);
done:
    PyMem_Free(heads.slots);
    Py_XDECREF(index);
    Py_XDECREF(times);
    Py_XDECREF(values);
    return result;
}

static PyMethodDef methods[] = {
    {"simple", simple, METH_VARARGS,
     "simple(text, scale, divide, max_us) -> (heads, index, times, values) or None\n\n"
     "A run of simple line-protocol lines as columns (see the source's comment)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_simplelines",
    .m_doc = "Runs of simple line-protocol lines, read as columns in one pass (compiled).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__simplelines(void) {
    return PyModule_Create(&module);
}
