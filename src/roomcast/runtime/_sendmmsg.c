/* Optional native helper for the SFU's fan-out (roomcast.runtime.sendmmsg): one sendmmsg(2) for every
 * datagram one input caused, and the header rewrite + SRTP protect of each forwarded copy done here.
 *
 * A Batch owns one growing arena of datagram bytes and one slot (offset, length, destination) per
 * datagram. add() copies a finished datagram in; add_rewritten() copies an RTP packet in, rewrites
 * byte 1, sequence number, timestamp, SSRC (and a transport-wide sequence number) and protects it in
 * place with libsrtp's srtp_protect, reached through the function pointer pylibsrtp's cffi module
 * exports (the same libsrtp, the same session: identical bytes to the pure-Python path). send() hands
 * the slots from `start` on to sendmmsg in chunks and returns how many the kernel took; Python decides
 * what a short count or an errno means. Built by pip when a C compiler exists; the pure-Python path
 * (one sendto per datagram) is used when it does not.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define CHUNK 256 /* messages per sendmmsg call (the kernel caps one call at UIO_MAXIOV = 1024) */

typedef int (*protect_fn)(void *ctx, void *rtp, int *len);

typedef struct {
    Py_ssize_t offset;
    Py_ssize_t length;
    struct sockaddr_storage addr;
    socklen_t addrlen;
} Slot;

typedef struct {
    PyObject_HEAD
    char *arena;
    Py_ssize_t used, capacity;
    Slot *slots;
    Py_ssize_t count, slot_capacity;
    int family;             /* the socket's address family: AF_INET or AF_INET6 */
    Py_ssize_t trailer;     /* room libsrtp may append (SRTP_MAX_TRAILER_LEN) */
    unsigned long long calls; /* sendmmsg system calls made */
} Batch;

static int reserve(Batch *b, Py_ssize_t bytes) {
    if (b->count == b->slot_capacity) {
        Py_ssize_t n = b->slot_capacity ? 2 * b->slot_capacity : 64;
        Slot *s = PyMem_Realloc(b->slots, (size_t)n * sizeof(Slot));
        if (s == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->slots = s;
        b->slot_capacity = n;
    }
    if (b->used + bytes > b->capacity) {
        Py_ssize_t n = b->capacity ? b->capacity : 65536;
        while (n < b->used + bytes) n *= 2;
        char *a = PyMem_Realloc(b->arena, (size_t)n);
        if (a == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->arena = a;
        b->capacity = n;
    }
    return 0;
}

/* host (numeric IPv4 or IPv6 text, as recvfrom gave it) and port -> the slot's sockaddr of the socket's
 * family (an IPv4 host on an IPv6 socket becomes ::ffff:a.b.c.d). Returns -1 with ValueError if neither. */
static int set_address(Batch *b, Slot *slot, PyObject *host, PyObject *port) {
    const char *text = PyUnicode_AsUTF8(host);
    if (text == NULL) return -1;
    long p = PyLong_AsLong(port);
    if (p == -1 && PyErr_Occurred()) return -1;
    if (p < 0 || p > 65535) {
        PyErr_SetString(PyExc_ValueError, "port out of range");
        return -1;
    }
    memset(&slot->addr, 0, sizeof(slot->addr));
    if (b->family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&slot->addr;
        if (inet_pton(AF_INET, text, &a->sin_addr) != 1) goto bad;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)p);
        slot->addrlen = sizeof(*a);
        return 0;
    }
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&slot->addr;
    if (inet_pton(AF_INET6, text, &a6->sin6_addr) != 1) {
        struct in_addr v4;
        if (inet_pton(AF_INET, text, &v4) != 1) goto bad;
        a6->sin6_addr.s6_addr[10] = 0xff;
        a6->sin6_addr.s6_addr[11] = 0xff;
        memcpy(&a6->sin6_addr.s6_addr[12], &v4, 4);
    }
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)p);
    slot->addrlen = sizeof(*a6);
    return 0;
bad:
    PyErr_Format(PyExc_ValueError, "not a numeric address of the socket's family: %s", text);
    return -1;
}

/* The bytes of a datagram: bytes and bytearray directly (the common case), any other contiguous buffer
 * (memoryview...) through the buffer protocol; `view->obj` is set only in that case (release it). */
static int get_buffer(PyObject *obj, const char **data, Py_ssize_t *len, Py_buffer *view) {
    view->obj = NULL;
    if (PyBytes_Check(obj)) {
        *data = PyBytes_AS_STRING(obj);
        *len = PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (PyByteArray_Check(obj)) {
        *data = PyByteArray_AS_STRING(obj);
        *len = PyByteArray_GET_SIZE(obj);
        return 0;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) return -1;
    *data = (const char *)view->buf;
    *len = view->len;
    return 0;
}

static void release(Py_buffer *view) {
    if (view->obj != NULL) PyBuffer_Release(view);
}

static int Batch_init(Batch *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"family", "trailer", NULL};
    int family;
    Py_ssize_t trailer = 144;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i|n", kwlist, &family, &trailer)) return -1;
    if (family != AF_INET && family != AF_INET6) {
        PyErr_SetString(PyExc_ValueError, "family must be AF_INET or AF_INET6");
        return -1;
    }
    if (trailer < 0) {
        PyErr_SetString(PyExc_ValueError, "trailer must be >= 0");
        return -1;
    }
    self->family = family;
    self->trailer = trailer;
    return 0;
}

static void Batch_dealloc(Batch *self) {
    PyMem_Free(self->arena);
    PyMem_Free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* add(data, host, port): queue a finished datagram (copied). */
static PyObject *Batch_add(Batch *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "add(data, host, port)");
        return NULL;
    }
    const char *data;
    Py_ssize_t len;
    Py_buffer view;
    if (get_buffer(args[0], &data, &len, &view) < 0) return NULL;
    if (reserve(self, len) < 0) {
        release(&view);
        return NULL;
    }
    Slot *slot = &self->slots[self->count];
    if (set_address(self, slot, args[1], args[2]) < 0) {
        release(&view);
        return NULL;
    }
    memcpy(self->arena + self->used, data, (size_t)len);
    release(&view);
    slot->offset = self->used;
    slot->length = len;
    self->used += len;
    self->count++;
    Py_RETURN_NONE;
}

static PyObject *add_rewritten(Batch *self, protect_fn fn, void *ctx, const char *data, Py_ssize_t len,
                               PyObject *const *args);

/* add_rewritten(protect, srtp, packet, b1, seq, ts, ssrc, twcc_at, twcc, host, port) -> libsrtp status.
 * The copy of `packet` gets byte 1, seq, ts and SSRC replaced (and, when twcc_at > 12, the one-byte header
 * extension element there: id nibble before it, 16-bit value at it, from twcc = id << 16 | value), then
 * srtp_protect(srtp, copy, &len). A non-zero status leaves nothing queued. */
static PyObject *Batch_add_rewritten(Batch *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "add_rewritten(protect, srtp, packet, b1, seq, ts, ssrc, twcc_at, twcc, host, port)");
        return NULL;
    }
    protect_fn fn = (protect_fn)PyLong_AsVoidPtr(args[0]);
    void *ctx = PyLong_AsVoidPtr(args[1]);
    if (PyErr_Occurred()) return NULL;
    if (fn == NULL || ctx == NULL) {
        PyErr_SetString(PyExc_ValueError, "null protect function or SRTP context");
        return NULL;
    }
    const char *data;
    Py_ssize_t len;
    Py_buffer view;
    if (get_buffer(args[2], &data, &len, &view) < 0) return NULL;
    PyObject *result = add_rewritten(self, fn, ctx, data, len, args);
    release(&view);
    return result;
}

static PyObject *add_rewritten(Batch *self, protect_fn fn, void *ctx, const char *data, Py_ssize_t len,
                               PyObject *const *args) {
    unsigned long b1 = PyLong_AsUnsignedLongMask(args[3]);
    unsigned long seq = PyLong_AsUnsignedLongMask(args[4]);
    unsigned long ts = PyLong_AsUnsignedLongMask(args[5]);
    unsigned long ssrc = PyLong_AsUnsignedLongMask(args[6]);
    long twcc_at = PyLong_AsLong(args[7]);
    unsigned long twcc = PyLong_AsUnsignedLongMask(args[8]);
    if (PyErr_Occurred()) return NULL;
    if (len < 12 || len > INT_MAX - self->trailer) {
        PyErr_SetString(PyExc_ValueError, "an RTP packet is 12 bytes or more");
        return NULL;
    }
    if (twcc_at > 12 && twcc_at + 2 > len) {
        PyErr_SetString(PyExc_ValueError, "transport-wide sequence number offset past the packet");
        return NULL;
    }
    if (reserve(self, len + self->trailer) < 0) return NULL;
    Slot *slot = &self->slots[self->count];
    if (set_address(self, slot, args[9], args[10]) < 0) return NULL;
    unsigned char *out = (unsigned char *)self->arena + self->used;
    memcpy(out, data, (size_t)len);
    out[1] = (unsigned char)b1;
    out[2] = (unsigned char)(seq >> 8);
    out[3] = (unsigned char)seq;
    out[4] = (unsigned char)(ts >> 24);
    out[5] = (unsigned char)(ts >> 16);
    out[6] = (unsigned char)(ts >> 8);
    out[7] = (unsigned char)ts;
    out[8] = (unsigned char)(ssrc >> 24);
    out[9] = (unsigned char)(ssrc >> 16);
    out[10] = (unsigned char)(ssrc >> 8);
    out[11] = (unsigned char)ssrc;
    if (twcc_at > 12) {
        out[twcc_at - 1] = (unsigned char)(((twcc >> 12) & 0xF0) | 1);
        out[twcc_at] = (unsigned char)(twcc >> 8);
        out[twcc_at + 1] = (unsigned char)twcc;
    }
    int n = (int)len;
    int status = fn(ctx, out, &n);
    if (status != 0) return PyLong_FromLong(status);
    if (n < 0 || n > len + self->trailer) {
        PyErr_SetString(PyExc_RuntimeError, "srtp_protect returned an impossible length");
        return NULL;
    }
    slot->offset = self->used;
    slot->length = n;
    self->used += n;
    self->count++;
    return PyLong_FromLong(0);
}

/* send(fd, start) -> how many datagrams from `start` the kernel accepted (fewer than queued: the next one
 * failed or would block). OSError when the very first one fails (its errno: EAGAIN, EBADF, EMSGSIZE...). */
static PyObject *Batch_send(Batch *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "send(fd, start)");
        return NULL;
    }
    int fd = (int)PyLong_AsLong(args[0]);
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (PyErr_Occurred()) return NULL;
    if (start < 0 || start > self->count) {
        PyErr_SetString(PyExc_IndexError, "start out of range");
        return NULL;
    }
    struct mmsghdr msgs[CHUNK];
    struct iovec iov[CHUNK];
    Py_ssize_t sent = 0, i = start;
    while (i < self->count) {
        unsigned int k = 0;
        for (; k < CHUNK && i + k < self->count; k++) {
            Slot *s = &self->slots[i + k];
            iov[k].iov_base = self->arena + s->offset;
            iov[k].iov_len = (size_t)s->length;
            memset(&msgs[k].msg_hdr, 0, sizeof(msgs[k].msg_hdr));
            msgs[k].msg_hdr.msg_name = &s->addr;
            msgs[k].msg_hdr.msg_namelen = s->addrlen;
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
        }
        int r;
        do {
            r = sendmmsg(fd, msgs, k, MSG_DONTWAIT);
        } while (r < 0 && errno == EINTR);
        self->calls++;
        if (r < 0) {
            if (sent > 0) break;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        sent += r;
        i += r;
        if ((unsigned int)r < k) break;
    }
    return PyLong_FromSsize_t(sent);
}

/* datagram(i) -> (bytes, (host, port)): slot i, for the slow path (the transport's own queue). */
static PyObject *Batch_datagram(Batch *self, PyObject *arg) {
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (i < 0 || i >= self->count) {
        PyErr_SetString(PyExc_IndexError, "no such datagram");
        return NULL;
    }
    Slot *s = &self->slots[i];
    char text[INET6_ADDRSTRLEN];
    int port;
    if (s->addr.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&s->addr;
        inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
        port = ntohs(a->sin_port);
    } else {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&s->addr;
        inet_ntop(AF_INET6, &a6->sin6_addr, text, sizeof(text));
        port = ntohs(a6->sin6_port);
    }
    return Py_BuildValue("(y#(si))", self->arena + s->offset, s->length, text, port);
}

static PyObject *Batch_clear(Batch *self, PyObject *Py_UNUSED(ignored)) {
    self->count = 0;
    self->used = 0;
    if (self->capacity > (1 << 22)) { /* a burst grew it past 4 MiB: give that back */
        PyMem_Free(self->arena);
        self->arena = NULL;
        self->capacity = 0;
    }
    Py_RETURN_NONE;
}

static Py_ssize_t Batch_len(Batch *self) { return self->count; }

static PyObject *Batch_get_calls(Batch *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLongLong(self->calls);
}

static PyMethodDef Batch_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Batch_add, METH_FASTCALL, "add(data, host, port): queue a datagram (copied)"},
    {"add_rewritten", (PyCFunction)(void (*)(void))Batch_add_rewritten, METH_FASTCALL,
     "add_rewritten(protect, srtp, packet, b1, seq, ts, ssrc, twcc_at, twcc, host, port) -> libsrtp status"},
    {"send", (PyCFunction)(void (*)(void))Batch_send, METH_FASTCALL, "send(fd, start) -> datagrams accepted"},
    {"datagram", (PyCFunction)Batch_datagram, METH_O, "datagram(i) -> (bytes, (host, port))"},
    {"clear", (PyCFunction)Batch_clear, METH_NOARGS, "forget every queued datagram"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Batch_getset[] = {
    {"calls", (getter)Batch_get_calls, NULL, "sendmmsg system calls made", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Batch_as_sequence = {.sq_length = (lenfunc)Batch_len};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "roomcast.runtime._sendmmsg.Batch",
    .tp_basicsize = sizeof(Batch),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Datagrams queued for one sendmmsg (see the module docstring).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Batch_init,
    .tp_dealloc = (destructor)Batch_dealloc,
    .tp_methods = Batch_methods,
    .tp_getset = Batch_getset,
    .tp_as_sequence = &Batch_as_sequence,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sendmmsg", "sendmmsg(2) batches and in-place SRTP protect for the fan-out.", -1, NULL,
};

PyMODINIT_FUNC PyInit__sendmmsg(void) {
    if (PyType_Ready(&BatchType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&BatchType);
    if (PyModule_AddObject(m, "Batch", (PyObject *)&BatchType) < 0) {
        Py_DECREF(&BatchType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "CHUNK", CHUNK) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
