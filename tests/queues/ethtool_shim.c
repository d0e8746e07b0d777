/* A fake NIC for the ethtool binary, loaded with LD_PRELOAD: every SIOCETHTOOL ioctl is
 * answered here instead of by a kernel, and each request's bytes are appended to
 * $SHIM_OUT as "ioctl <cmd hex> <bytes hex>". GET commands answer as a NIC with 8 rings,
 * a 128-entry RSS table and a 40-byte key would; SET commands succeed (a new RSS context
 * gets id 1). This lets tests/queues_bytes.rs compare what vportd sends for RSS contexts
 * and ntuple rules with what ethtool sends for the same command, with no driver that has
 * them. Built by the test with cc -shared -fPIC. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

static void dump(uint32_t cmd, const void *p, size_t n) {
    const char *path = getenv("SHIM_OUT");
    FILE *f = path ? fopen(path, "a") : NULL;
    if (!f) return;
    fprintf(f, "ioctl %08x ", cmd);
    for (size_t i = 0; i < n; i++) fprintf(f, "%02x", ((const unsigned char *)p)[i]);
    fprintf(f, "\n");
    fclose(f);
}

int ioctl(int fd, unsigned long req, ...) {
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (req != SIOCETHTOOL) {
        int (*real)(int, unsigned long, void *) = dlsym(RTLD_NEXT, "ioctl");
        return real(fd, req, arg);
    }
    struct ifreq *ifr = arg;
    void *data = ifr->ifr_data;
    uint32_t cmd = *(uint32_t *)data;
    switch (cmd) {
    case ETHTOOL_GRXRINGS: {
        struct ethtool_rxnfc *r = data;
        r->data = 8;
        return 0;
    }
    case ETHTOOL_GRSSH: {
        struct ethtool_rxfh *r = data;
        if (r->indir_size == 0 && r->key_size == 0) {
            r->indir_size = 128;
            r->key_size = 40;
            r->hfunc = 1; /* ETH_RSS_HASH_TOP */
        } else {
            uint32_t *t = r->rss_config;
            for (uint32_t i = 0; i < r->indir_size; i++) t[i] = i % 8;
        }
        return 0;
    }
    case ETHTOOL_SRSSH: {
        struct ethtool_rxfh *r = data;
        dump(cmd, data, sizeof(*r) + r->indir_size * 4 + r->key_size);
        if (r->rss_context == ETH_RXFH_CONTEXT_ALLOC) r->rss_context = 1;
        return 0;
    }
    case ETHTOOL_SRXCLSRLINS:
    case ETHTOOL_SRXCLSRLDEL:
        dump(cmd, data, sizeof(struct ethtool_rxnfc));
        return 0;
    case ETHTOOL_SCHANNELS:
    case ETHTOOL_SRXFHINDIR:
        dump(cmd, data, cmd == ETHTOOL_SCHANNELS ? sizeof(struct ethtool_channels) : 8);
        return 0;
    default:
        dump(cmd, data, 4);
        errno = 95;
        return -1;
    }
}
