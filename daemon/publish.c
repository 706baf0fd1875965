/* The publisher thread: owns the PUB socket; every journaled event goes out as [type][envelope]. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

void sc__ingest_free_batch(void *batch);
void sc__ingest_publish_batch(void *pub, void *batch);

typedef struct s_pub {
    sc__daemon_t *d;
    void *pull, *pub;
    char err[512];
    int rc;
    pthread_mutex_t lock;
    pthread_cond_t ready;
    bool started;
} s_pub_t;

static s_pub_t s_self;

void *sc__publish_socket(sc__daemon_t *d)
{
    void *s = zmq_socket(d->zctx, ZMQ_PUSH);
    int hwm = 0; /* never drop between threads: the PUB's own HWM is the limit */
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_connect(s, SC__PUBLISH_PIPE);
    return s;
}

void sc__publish_event(void *sock, const char *type, char *json)
{
    zmq_send(sock, "E", 1, ZMQ_SNDMORE);
    zmq_send(sock, type, strlen(type), ZMQ_SNDMORE);
    zmq_send(sock, json, strlen(json), 0);
    free(json);
}

static void *s_main(void *arg)
{
    s_pub_t *self = arg;
    pthread_setname_np(pthread_self(), "sc-publish");
    const char *endpoint = sc__cfg_str(self->d->cfg->core, "publish", "endpoint");
    int hwm = (int)sc__cfg_int(self->d->cfg->core, "publish", "hwm");
    self->pull = zmq_socket(self->d->zctx, ZMQ_PULL);
    int zero = 0;
    zmq_setsockopt(self->pull, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_bind(self->pull, SC__PUBLISH_PIPE);
    self->pub = zmq_socket(self->d->zctx, ZMQ_PUB);
    zmq_setsockopt(self->pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    int linger = 0;
    zmq_setsockopt(self->pub, ZMQ_LINGER, &linger, sizeof linger);
    if (sc__security_publish(self->d, self->pub, self->err, sizeof self->err) < 0) {
        self->rc = -EINVAL;
    } else if (zmq_bind(self->pub, endpoint) < 0) {
        snprintf(self->err, sizeof self->err, "publish.endpoint: could not bind \"%s\": %s",
                 endpoint, zmq_strerror(zmq_errno()));
        self->rc = -EADDRINUSE;
    }
    pthread_mutex_lock(&self->lock);
    self->started = true;
    pthread_cond_signal(&self->ready);
    pthread_mutex_unlock(&self->lock);
    if (self->rc < 0)
        goto out;

    for (;;) {
        char tag[2];
        if (zmq_recv(self->pull, tag, sizeof tag, 0) < 0) {
            if (zmq_errno() == ETERM)
                break;
            continue;
        }
        if (tag[0] == 'T')
            break;
        if (tag[0] == 'B') {
            void *batch = NULL;
            zmq_recv(self->pull, &batch, sizeof batch, 0);
            sc__ingest_publish_batch(self->pub, batch);
            continue;
        }
        /* 'E': [type][envelope] from a plugin thread; forwarded frame by frame. */
        int more = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, self->pull, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            more = zmq_msg_more(&m);
            if (zmq_msg_send(&m, self->pub, more ? ZMQ_SNDMORE : 0) < 0)
                zmq_msg_close(&m);
        }
    }
out:
    zmq_close(self->pub);
    zmq_close(self->pull);
    return NULL;
}

int sc__publish_start(sc__daemon_t *d, char *err, size_t errlen)
{
    s_self = (s_pub_t){.d = d};
    pthread_mutex_init(&s_self.lock, NULL);
    pthread_cond_init(&s_self.ready, NULL);
    pthread_create(&d->publisher, NULL, s_main, &s_self);
    pthread_mutex_lock(&s_self.lock);
    while (!s_self.started)
        pthread_cond_wait(&s_self.ready, &s_self.lock);
    pthread_mutex_unlock(&s_self.lock);
    if (s_self.rc < 0) {
        snprintf(err, errlen, "%s", s_self.err);
        pthread_join(d->publisher, NULL);
        return s_self.rc;
    }
    return 0;
}

void sc__publish_stop(sc__daemon_t *d)
{
    void *s = sc__publish_socket(d);
    zmq_send(s, "T", 1, 0);
    zmq_close(s);
    pthread_join(d->publisher, NULL);
}
