/* A fake NIC for the ethtool binary, loaded with LD_PRELOAD: every SIOCETHTOOL ioctl is
 * answered here instead of by a kernel, and each request's bytes are appended to
 * $SHIM_OUT as "ioctl <cmd hex> <bytes hex>" (SET commands, and the rule GET). GET commands answer as a NIC with 8 rings,
 * a 128-entry RSS table and a 40-byte key would ($SHIM_RINGS rings when set); SET
 * commands succeed. Within one process it remembers what was set, as a driver would: new
 * RSS contexts get ids from 1 and report their tables, inserted rules read back by
 * location (ETHTOOL_GRXCLSRULE), deleted ones answer ENOENT. This lets
 * tests/queues_bytes.rs compare what vportd sends for RSS contexts and ntuple rules with
 * what ethtool sends for the same command, with no driver that has them, and
 * benches/queues_setup.rs time both against the same fake NIC. Built with cc -shared -fPIC. */
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

#define MAX_CTX 256
#define MAX_RULES 1024
static uint32_t ctx_table[MAX_CTX][128];
static int ctx_used[MAX_CTX];
static struct ethtool_rxnfc rules[MAX_RULES];
static int rule_used[MAX_RULES];

static uint32_t rings(void) {
    const char *r = getenv("SHIM_RINGS");
    return r ? (uint32_t)atoi(r) : 8;
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
        r->data = rings();
        return 0;
    }
    case ETHTOOL_GRXCLSRULE: {
        struct ethtool_rxnfc *r = data;
        uint32_t loc = r->fs.location;
        dump(cmd, data, sizeof(*r));
        if (loc >= MAX_RULES || !rule_used[loc]) {
            errno = ENOENT;
            return -1;
        }
        memcpy(r, &rules[loc], sizeof(*r));
        r->cmd = ETHTOOL_GRXCLSRULE;
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
            uint32_t c = r->rss_context;
            if (c != 0 && (c >= MAX_CTX || !ctx_used[c])) {
                errno = ENOENT;
                return -1;
            }
            for (uint32_t i = 0; i < r->indir_size && i < 128; i++)
                t[i] = c ? ctx_table[c][i] : i % rings();
        }
        return 0;
    }
    case ETHTOOL_SRSSH: {
        struct ethtool_rxfh *r = data;
        dump(cmd, data, sizeof(*r) + r->indir_size * 4 + r->key_size);
        if (r->rss_context == ETH_RXFH_CONTEXT_ALLOC) {
            uint32_t c = 1;
            while (c < MAX_CTX && ctx_used[c]) c++;
            if (c == MAX_CTX) {
                errno = ENOSPC;
                return -1;
            }
            ctx_used[c] = 1;
            for (uint32_t i = 0; i < 128; i++)
                ctx_table[c][i] = i < r->indir_size ? r->rss_config[i] : 0;
            r->rss_context = c;
        } else if (r->rss_context != 0 && r->indir_size == 0 && r->rss_context < MAX_CTX) {
            ctx_used[r->rss_context] = 0;
        }
        return 0;
    }
    case ETHTOOL_SRXCLSRLINS: {
        struct ethtool_rxnfc *r = data;
        dump(cmd, data, sizeof(*r));
        if (r->fs.location < MAX_RULES) {
            rules[r->fs.location] = *r;
            rule_used[r->fs.location] = 1;
        }
        return 0;
    }
    case ETHTOOL_SRXCLSRLDEL: {
        struct ethtool_rxnfc *r = data;
        dump(cmd, data, sizeof(*r));
        if (r->fs.location < MAX_RULES) rule_used[r->fs.location] = 0;
        return 0;
    }
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
