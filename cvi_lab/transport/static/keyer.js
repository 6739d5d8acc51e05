// Green-screen keying in WebGL: the replica's video drawn on a canvas with the key colour (RGB [0, 255, 155] in
// green-screen calls) made transparent, or replaced by a chosen colour. Why in the page: custom front ends key
// the replica themselves (the server sends the exact green); this is that front end, with no build step.
"use strict";

(function () {
  // Distance in YCbCr chroma from the key below which a pixel is background (alpha 0) and above which it is the
  // replica (alpha 1); between the two, a soft edge. VP8 moves the flat key by a few levels, skin is ~0.5 away.
  const KEY_INNER = 0.14, KEY_OUTER = 0.24;

  const VERTEX = `
    attribute vec2 a_pos;
    varying vec2 v_uv;
    void main() {
      v_uv = vec2((a_pos.x + 1.0) * 0.5, (1.0 - a_pos.y) * 0.5); // the video's first row at the canvas top
      gl_Position = vec4(a_pos, 0.0, 1.0);
    }`;

  const FRAGMENT = `
    precision mediump float;
    uniform sampler2D u_video;
    uniform vec3 u_key;        // the key colour, 0..1
    uniform vec4 u_background; // straight (not premultiplied) RGBA; alpha 0 = transparent
    uniform vec2 u_range;      // (KEY_INNER, KEY_OUTER)
    varying vec2 v_uv;
    vec2 chroma(vec3 c) {
      return vec2(-0.168736 * c.r - 0.331264 * c.g + 0.5 * c.b, 0.5 * c.r - 0.418688 * c.g - 0.081312 * c.b);
    }
    void main() {
      vec3 rgb = texture2D(u_video, v_uv).rgb;
      float d = distance(chroma(rgb), chroma(u_key));
      float alpha = smoothstep(u_range.x, u_range.y, d);
      // spill: near the key, pull the key's green out of the replica's edge (hair, shoulders)
      vec3 despilled = vec3(rgb.r, min(rgb.g, max(rgb.r, rgb.b)), rgb.b);
      rgb = mix(despilled, rgb, smoothstep(u_range.y, 2.0 * u_range.y, d));
      // premultiplied "replica over background"
      float outAlpha = alpha + u_background.a * (1.0 - alpha);
      gl_FragColor = vec4(rgb * alpha + u_background.rgb * u_background.a * (1.0 - alpha), outAlpha);
    }`;

  function compile(gl, type, source) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error("shader: " + gl.getShaderInfoLog(shader));
    return shader;
  }

  // createKeyer(video, canvas, keyRgb) -> {setBackground([r, g, b, a] 0..255 | null), pixel(x, y), start(), stop()}
  // or throws when the browser has no WebGL. `pixel` reads the canvas as the person sees it (RGBA, premultiplied).
  function createKeyer(video, canvas, keyRgb) {
    const gl = canvas.getContext("webgl", { premultipliedAlpha: true, alpha: true });
    if (!gl) throw new Error("WebGL is not available");
    const program = gl.createProgram();
    gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error("program: " + gl.getProgramInfoLog(program));
    gl.useProgram(program);

    gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
    const pos = gl.getAttribLocation(program, "a_pos");
    gl.enableVertexAttribArray(pos);
    gl.vertexAttribPointer(pos, 2, gl.FLOAT, false, 0, 0);

    gl.bindTexture(gl.TEXTURE_2D, gl.createTexture());
    for (const [k, v] of [[gl.TEXTURE_MIN_FILTER, gl.LINEAR], [gl.TEXTURE_MAG_FILTER, gl.LINEAR],
      [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]]) gl.texParameteri(gl.TEXTURE_2D, k, v);

    const uniform = (name) => gl.getUniformLocation(program, name);
    gl.uniform3f(uniform("u_key"), keyRgb[0] / 255, keyRgb[1] / 255, keyRgb[2] / 255);
    gl.uniform2f(uniform("u_range"), KEY_INNER, KEY_OUTER);
    const uBackground = uniform("u_background");
    gl.uniform4f(uBackground, 0, 0, 0, 0);

    let running = false, frames = 0, fallback = null, lastFrameAt = 0;
    function draw() {
      if (!video.videoWidth || video.readyState < 2) return;
      if (canvas.width !== video.videoWidth || canvas.height !== video.videoHeight) {
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
      }
      gl.viewport(0, 0, canvas.width, canvas.height);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, video);
      gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
      frames += 1;
    }
    // Once per decoded video frame, not per display refresh (software WebGL on a small machine is not free):
    // the video's frame callbacks, and a 25 fps timer where they do not come for the (unseen) video.
    let generation = 0; // a callback still pending from before a stop() must not start a second chain
    function perVideoFrame(gen) {
      const onFrame = () => {
        if (!running || gen !== generation) return;
        lastFrameAt = performance.now();
        if (fallback) { clearInterval(fallback); fallback = null; }
        draw();
        video.requestVideoFrameCallback(onFrame);
      };
      video.requestVideoFrameCallback(onFrame);
    }
    function watch() {
      if (running && !fallback && performance.now() - lastFrameAt > 1000) fallback = setInterval(draw, 40);
    }
    return {
      start() {
        if (running) return;
        running = true;
        lastFrameAt = performance.now();
        if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) perVideoFrame(++generation);
        watch.timer = setInterval(watch, 500);
      },
      stop() { running = false; clearInterval(fallback); clearInterval(watch.timer); fallback = null; },
      setBackground(rgba) {
        const c = rgba || [0, 0, 0, 0];
        gl.uniform4f(uBackground, c[0] / 255, c[1] / 255, c[2] / 255, c[3] / 255);
        draw();
      },
      pixel(x, y) { // drawn and read in one task: the drawing buffer need not be preserved
        draw();
        const out = new Uint8Array(4);
        gl.readPixels(x, canvas.height - 1 - y, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, out); // GL rows start at the bottom
        return Array.from(out);
      },
      get frames() { return frames; },
      get perVideoFrame() { return running && !fallback; },
    };
  }

  window.cviKeyer = { createKeyer };
})();
