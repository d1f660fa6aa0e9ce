/* A no-op libpcaudio.so.0 for espeak-ng on a machine without its audio stack
 * (the GPU training machine): espeak-ng links pcaudio for playback, but the
 * data pipeline only uses --stdout, so no device is ever opened. */
#include <stddef.h>
struct audio_object;
struct audio_object *create_audio_device_object(const char *d, const char *a, const char *n) { (void)d; (void)a; (void)n; return NULL; }
int audio_object_open(struct audio_object *o, int f, unsigned r, unsigned char c) { (void)o; (void)f; (void)r; (void)c; return -1; }
void audio_object_close(struct audio_object *o) { (void)o; }
void audio_object_destroy(struct audio_object *o) { (void)o; }
int audio_object_write(struct audio_object *o, const void *d, size_t n) { (void)o; (void)d; (void)n; return -1; }
int audio_object_drain(struct audio_object *o) { (void)o; return 0; }
int audio_object_flush(struct audio_object *o) { (void)o; return 0; }
const char *audio_object_strerror(struct audio_object *o, int e) { (void)o; (void)e; return "no audio device (stub)"; }
