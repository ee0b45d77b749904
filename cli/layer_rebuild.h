/* explain network's step 3: each single-input layer of a net rebuilt as a net of its own from its
 * line of the model text, apart from the rest of explain so that the fuzz target
 * tests/fuzz/fuzz_explain_network.c runs the same code on any model the parser accepts. */
#ifndef CNN_LAYER_REBUILD_H
#define CNN_LAYER_REBUILD_H

#include "cnn.h"

/* Line `line` (from 1) of `text`, without its newline, whatever its length: a new string, or NULL
 * when out of memory. A line past the end is "". */
char *model_line(const char *text, int line);

/* Layer `i` of `net` (parsed from `text`), which reads one value: rebuilt from its line without
 * name= and from= (and its comment) as "input C H W", a flatten when the value it reads is flat,
 * and the line, on the reference path, reserved for one sample, in `training` mode, with the
 * layer's parameters and buffers copied from `net`. `*me` receives the layer's index in *one.
 * The rebuilt layer must be the same layer: same kind, same input and output shapes, parameters and
 * buffers of the same sizes; one that is not (which would read or write past the buffers the
 * caller sized for the original) is refused. Returns CNN_OK, or the library's error with the message
 * naming the layer and its line (*one NULL). */
cnn_status rebuild_layer(const char *text, const cnn_net *net, int i, int training, cnn_net **one, int *me);

#endif
