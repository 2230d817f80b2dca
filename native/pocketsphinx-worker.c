/*
 * pocketsphinx-worker: one long-lived speech recognizer process for the local CPU ASR engine
 * (src/engines/local/pocketsphinx-asr.ts keeps a pool of these).
 *
 * Why hand-written C: no npm package binds pocketsphinx in a way that works offline on Node 20 —
 * the WASM/JS ports fetch their models at install or run time, and the old native addons do not
 * build against current Node. Debian ships libpocketsphinx (0.8+5prealpha, the classic cmd_ln/ps_*
 * API) and the en-us model, so a ~300-line process speaking a pipe protocol is the smallest
 * dependable binding. It also isolates the decoder: a crash kills one worker, never the server.
 *
 * Startup: load the model once (16 kHz), then print one line on stdout:
 *   {"type":"ready","pid":1234,"sample_rate":16000}
 * Any pocketsphinx option can be given on the command line (e.g. `-hmm DIR -dither yes`) and
 * overrides the defaults below. pocketsphinx's own logging goes to /dev/null (or `-logfn FILE`);
 * our own diagnostics go to stderr; stdout carries only the JSON protocol.
 *
 * Input (stdin), a stream of frames:  1 byte type | 4 byte little-endian payload length | payload
 *   'B' BEGIN   payload: 4 byte LE utterance id, then optionally 13 float32 LE: the cepstral mean
 *               to start from (a final's "cmn" for the same caller). Without it the utterance
 *               starts from the initial mean (-cmninit). Ends a running utterance silently.
 *   'A' AUDIO   payload: 16 kHz mono PCM16 LE samples for the running utterance.
 *   'E' END     no payload. Ends the utterance; exactly one final (or error) line follows.
 *   'C' CANCEL  no payload. Drops the utterance; nothing more is written for it.
 * Frames for no running utterance (AUDIO after CANCEL, say) are ignored. EOF on stdin exits 0.
 *
 * Output (stdout), newline-delimited JSON, every line tagged with the utterance id so the reader
 * can drop lines of an utterance it already cancelled:
 *   {"type":"partial","id":7,"text":"go forward"}     at most once per PARTIAL_INTERVAL of audio,
 *                                                      only when the hypothesis changed
 *   {"type":"final","id":7,"text":"go forward ten meters","audio_ms":2785,"decode_ms":412,
 *    "cmn":[41.2,-5.1,...]}                        (cepstral mean after this utterance)
 *   {"type":"error","id":7,"message":"..."}
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pocketsphinx.h>
#include <cmn.h>
#include <err.h>
#include <feat.h>

#define SAMPLE_RATE 16000
/* Partial hypotheses are checked after this much new audio (160 ms). */
#define PARTIAL_INTERVAL_SAMPLES (SAMPLE_RATE * 160 / 1000)
/* A frame larger than this is a protocol error (60 s of audio). */
#define MAX_PAYLOAD (SAMPLE_RATE * 2 * 60)

#define MODEL_DIR "/usr/share/pocketsphinx/model/en-us"

static ps_decoder_t *ps;
static int in_utt;            /* an utterance is running */
static uint32_t utt_id;
static uint64_t utt_samples;  /* audio received for the running utterance */
static uint64_t since_partial;
static double utt_cpu_ms;     /* decoder time spent on the running utterance */
static char *last_partial;

/* Cepstral mean normalisation. Live CMN keeps a running mean of the cepstrum and carries it from one
 * utterance to the next; in a shared worker that would leak one caller's channel into the next
 * caller's decode. So every utterance starts from a known mean: the one sent with BEGIN (the
 * caller's own, from its previous final) or else the configured initial mean, and each final
 * reports the updated mean so the client can keep it per caller. */
static cmn_t *cmn_state;
static int cmn_len;
static mfcc_t initial_mean[64];
static mfcc_t begin_mean[64];
/* Weight, in frames, of the starting mean against the utterance's own frames (-cmnprior, ours, not
 * pocketsphinx's). pocketsphinx gives the prior 500 frames and refreshes the mean only every 300
 * frames, so an utterance shorter than ~8 s is normalised with the prior alone; we refresh it after
 * every AUDIO frame instead. 0 keeps pocketsphinx's own behaviour. */
static int cmn_prior_frames = 100;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* Writes s as a JSON string literal. */
static void put_json_string(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') {
            putchar('\\');
            putchar(*p);
        } else if (*p < 0x20) {
            printf("\\u%04x", *p);
        } else {
            putchar(*p);
        }
    }
    putchar('"');
}

static void emit_error(uint32_t id, const char *message) {
    printf("{\"type\":\"error\",\"id\":%u,\"message\":", id);
    put_json_string(message);
    fputs("}\n", stdout);
    fflush(stdout);
}

static void clear_partial(void) {
    free(last_partial);
    last_partial = NULL;
}

static void begin_utt(uint32_t id, const mfcc_t *mean) {
    if (in_utt) ps_end_utt(ps); /* protocol misuse; drop the old one quietly */
    in_utt = 0;
    if (cmn_state != NULL) {
        cmn_live_set(cmn_state, mean != NULL ? mean : initial_mean);
        if (cmn_prior_frames > 0) {
            for (int i = 0; i < cmn_len; i++)
                cmn_state->sum[i] = cmn_state->cmn_mean[i] * (mfcc_t)cmn_prior_frames;
            cmn_state->nframe = cmn_prior_frames;
        }
    }
    utt_id = id;
    utt_samples = 0;
    since_partial = 0;
    utt_cpu_ms = 0;
    clear_partial();
    if (ps_start_utt(ps) < 0) {
        emit_error(id, "ps_start_utt failed");
        return;
    }
    in_utt = 1;
}

static void maybe_emit_partial(void) {
    if (since_partial < PARTIAL_INTERVAL_SAMPLES) return;
    since_partial = 0;
    int32 score;
    const char *hyp = ps_get_hyp(ps, &score);
    if (hyp == NULL || hyp[0] == '\0') return;
    if (last_partial != NULL && strcmp(last_partial, hyp) == 0) return;
    clear_partial();
    last_partial = strdup(hyp);
    printf("{\"type\":\"partial\",\"id\":%u,\"text\":", utt_id);
    put_json_string(hyp);
    fputs("}\n", stdout);
    fflush(stdout);
}

static void audio(const int16 *samples, size_t n) {
    if (!in_utt || n == 0) return;
    double t0 = now_ms();
    if (ps_process_raw(ps, samples, n, FALSE, FALSE) < 0) {
        in_utt = 0;
        ps_end_utt(ps);
        emit_error(utt_id, "ps_process_raw failed");
        return;
    }
    if (cmn_state != NULL && cmn_prior_frames > 0 && cmn_state->nframe > 0) {
        /* Same running mean cmn_live keeps, just refreshed now rather than every 300 frames. */
        for (int i = 0; i < cmn_len; i++)
            cmn_state->cmn_mean[i] = cmn_state->sum[i] / (mfcc_t)cmn_state->nframe;
    }
    utt_samples += n;
    since_partial += n;
    maybe_emit_partial();
    utt_cpu_ms += now_ms() - t0;
}

static void end_utt(void) {
    if (!in_utt) return;
    in_utt = 0;
    double t0 = now_ms();
    if (ps_end_utt(ps) < 0) {
        emit_error(utt_id, "ps_end_utt failed");
        return;
    }
    int32 score;
    const char *hyp = ps_get_hyp(ps, &score);
    utt_cpu_ms += now_ms() - t0;
    printf("{\"type\":\"final\",\"id\":%u,\"text\":", utt_id);
    put_json_string(hyp);
    printf(",\"audio_ms\":%llu,\"decode_ms\":%.0f,\"cmn\":[",
           (unsigned long long)(utt_samples * 1000 / SAMPLE_RATE), utt_cpu_ms);
    if (cmn_state != NULL) {
        mfcc_t mean[64];
        cmn_live_get(cmn_state, mean);
        for (int i = 0; i < cmn_len; i++) printf(i ? ",%.2f" : "%.2f", (double)mean[i]);
    }
    fputs("]}\n", stdout);
    fflush(stdout);
    clear_partial();
}

static void cancel_utt(void) {
    if (!in_utt) return;
    in_utt = 0;
    ps_end_utt(ps); /* cheap enough; leaves the decoder clean for the next BEGIN */
    clear_partial();
}

/* Reads exactly n bytes; returns 0 on clean EOF before any byte, -1 on short read / error. */
static int read_full(void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        size_t r = fread((char *)buf + got, 1, n - got, stdin);
        if (r == 0) {
            if (ferror(stdin) && errno == EINTR) {
                clearerr(stdin);
                continue;
            }
            return got == 0 ? 0 : -1;
        }
        got += r;
    }
    return 1;
}

static int has_arg(int argc, char **argv, const char *name) {
    for (int i = 1; i < argc; i += 2)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

int main(int argc, char **argv) {
    /* Defaults; anything given on our command line wins. */
    static const char *defaults[][2] = {
        {"-hmm", MODEL_DIR "/en-us"},
        {"-lm", MODEL_DIR "/en-us.lm.bin"},
        {"-dict", MODEL_DIR "/cmudict-en-us.dict"},
        {"-samprate", "16000"},
        {"-logfn", "/dev/null"},
    };
    const int ndefaults = (int)(sizeof(defaults) / sizeof(defaults[0]));
    if ((argc - 1) % 2 != 0) {
        fprintf(stderr, "pocketsphinx-worker: options must come in -name value pairs\n");
        return 2;
    }
    char **args = calloc((size_t)(argc + 2 * ndefaults + 1), sizeof(char *));
    int nargs = 0;
    args[nargs++] = argv[0];
    for (int i = 0; i < ndefaults; i++) {
        if (has_arg(argc, argv, defaults[i][0])) continue;
        args[nargs++] = (char *)defaults[i][0];
        args[nargs++] = (char *)defaults[i][1];
    }
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-cmnprior") == 0) { /* ours; pocketsphinx would reject it */
            cmn_prior_frames = atoi(argv[i + 1]);
            continue;
        }
        args[nargs++] = argv[i];
        args[nargs++] = argv[i + 1];
    }

    /* Keep sphinxbase quiet until -logfn takes over inside ps_init(). */
    err_set_logfp(NULL);
    cmd_ln_t *config = cmd_ln_parse_r(NULL, ps_args(), nargs, args, TRUE);
    if (config == NULL) {
        fprintf(stderr, "pocketsphinx-worker: bad pocketsphinx options\n");
        return 2;
    }
    ps = ps_init(config);
    if (ps == NULL) {
        fprintf(stderr, "pocketsphinx-worker: ps_init failed (model missing? hmm=%s)\n",
                cmd_ln_str_r(config, "-hmm"));
        return 3;
    }
    feat_t *feat = ps_get_feat(ps);
    if (feat != NULL && feat->cmn_struct != NULL && feat->cmn_struct->veclen <= 64) {
        cmn_state = feat->cmn_struct;
        cmn_len = cmn_state->veclen;
        cmn_live_get(cmn_state, initial_mean);
        /* pocketsphinx 0.8+5prealpha lets the model's feat.params overwrite -cmninit given on the
         * command line; an explicit -cmninit wins here. */
        for (int i = 1; i + 1 < argc; i += 2) {
            if (strcmp(argv[i], "-cmninit") != 0) continue;
            char *p = argv[i + 1];
            for (int k = 0; k < cmn_len && *p; k++) {
                initial_mean[k] = (mfcc_t)strtod(p, &p);
                while (*p == ',' || *p == ' ') p++;
            }
        }
        cmn_live_set(cmn_state, initial_mean);
    }
    printf("{\"type\":\"ready\",\"pid\":%ld,\"sample_rate\":%d}\n", (long)getpid(), SAMPLE_RATE);
    fflush(stdout);

    size_t cap = 32768;
    unsigned char *payload = malloc(cap);
    for (;;) {
        unsigned char header[5];
        int r = read_full(header, sizeof header);
        if (r == 0) break; /* EOF: parent went away or closed us */
        if (r < 0) {
            fprintf(stderr, "pocketsphinx-worker: truncated frame header\n");
            return 4;
        }
        uint32_t len = (uint32_t)header[1] | (uint32_t)header[2] << 8 | (uint32_t)header[3] << 16 |
                       (uint32_t)header[4] << 24;
        if (len > MAX_PAYLOAD) {
            fprintf(stderr, "pocketsphinx-worker: frame of %u bytes is too large\n", len);
            return 4;
        }
        if (len > cap) {
            cap = len;
            payload = realloc(payload, cap);
        }
        if (len > 0 && read_full(payload, len) != 1) {
            fprintf(stderr, "pocketsphinx-worker: truncated frame payload\n");
            return 4;
        }
        switch (header[0]) {
        case 'B': {
            uint32_t id = len >= 4 ? ((uint32_t)payload[0] | (uint32_t)payload[1] << 8 |
                                      (uint32_t)payload[2] << 16 | (uint32_t)payload[3] << 24)
                                   : 0;
            const mfcc_t *mean = NULL;
            if (cmn_state != NULL && len == 4 + 4 * (uint32_t)cmn_len) {
                for (int k = 0; k < cmn_len; k++) {
                    float f;
                    memcpy(&f, payload + 4 + 4 * k, 4);
                    begin_mean[k] = (mfcc_t)f;
                }
                mean = begin_mean;
            }
            begin_utt(id, mean);
            break;
        }
        case 'A':
            /* The payload buffer is malloc'd, so it is suitably aligned for int16. x86 and ARM
             * Linux are little-endian, matching the wire format. */
            audio((const int16 *)payload, len / 2);
            break;
        case 'E':
            end_utt();
            break;
        case 'C':
            cancel_utt();
            break;
        default:
            fprintf(stderr, "pocketsphinx-worker: unknown frame type 0x%02x\n", header[0]);
            return 4;
        }
    }
    if (in_utt) ps_end_utt(ps);
    ps_free(ps);
    cmd_ln_free_r(config);
    free(payload);
    free(args);
    return 0;
}
