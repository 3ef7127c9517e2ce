// An AudioWorklet processor (the audio thread): the microphone's samples, mixed to mono,
// posted to the page in blocks. A "stop" message is answered with what is left and "stopped",
// after every block before it, so the page knows it has the whole recording.
"use strict";

const BLOCK = 4096;

class Recorder extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(BLOCK);
    this.filled = 0;
    this.stopped = false;
    this.port.onmessage = () => {
      this.flush();
      this.stopped = true;
      this.port.postMessage("stopped");
    };
  }

  process(inputs) {
    const channels = inputs[0];
    if (this.stopped || !channels || !channels.length) return !this.stopped;
    const n = channels[0].length;
    for (let i = 0; i < n; i++) {
      let sum = 0;
      for (const channel of channels) sum += channel[i];
      this.block[this.filled++] = sum / channels.length;
      if (this.filled === BLOCK) this.flush();
    }
    return true;
  }

  flush() {
    if (!this.filled) return;
    const samples = this.block.slice(0, this.filled);
    this.port.postMessage(samples, [samples.buffer]);
    this.filled = 0;
  }
}

registerProcessor("pyserving-recorder", Recorder);
