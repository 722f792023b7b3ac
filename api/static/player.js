// The player: an <audio> element on a short-lived signed URL (the browser then seeks with HTTP
// Range requests) and a waveform drawn from peaks the server computed.
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

export function formatClock(seconds) {
  if (!Number.isFinite(seconds)) seconds = 0;
  const s = Math.floor(seconds % 60), m = Math.floor(seconds / 60) % 60, h = Math.floor(seconds / 3600);
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return `${h ? h + ":" : ""}${mm}:${String(s).padStart(2, "0")}`;
}

export class Player {
  constructor({ audio, canvas, button, icon, time, speed }) {
    Object.assign(this, { audio, canvas, button, icon, time, speed });
    speed.addEventListener("click", () => {
      const rates = [1, 1.5, 2, 4];
      audio.playbackRate = rates[(rates.indexOf(audio.playbackRate) + 1) % rates.length];
      speed.textContent = `${audio.playbackRate}×`;
    });
    this.peaks = null; this.gaps = []; this.durationMs = 0;
    button.addEventListener("click", () => this.toggle());
    audio.addEventListener("timeupdate", () => this.draw());
    audio.addEventListener("play", () => this.sync());
    audio.addEventListener("pause", () => this.sync());
    audio.addEventListener("ended", () => this.sync());
    audio.addEventListener("loadedmetadata", () => this.draw());
    canvas.addEventListener("click", (e) => {
      const box = canvas.getBoundingClientRect();
      this.seek(((e.clientX - box.left) / box.width) * this.duration());
    });
    canvas.addEventListener("keydown", (e) => {
      const step = e.shiftKey ? 15 : 5;
      const moves = { ArrowLeft: -step, ArrowRight: step, Home: -Infinity, End: Infinity };
      if (e.key in moves) { e.preventDefault(); this.seek(this.audio.currentTime + moves[e.key]); }
      else if (e.key === " " || e.key === "Enter") { e.preventDefault(); this.toggle(); }
    });
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  duration() { return Number.isFinite(this.audio.duration) ? this.audio.duration : this.durationMs / 1000; }

  load(url, durationMs, gaps) {
    this.audio.pause();
    this.audio.src = url;
    this.durationMs = durationMs; this.gaps = gaps; this.peaks = null;
    this.canvas.setAttribute("aria-valuemax", String(Math.round(durationMs / 1000)));
    this.sync();
  }

  setPeaks(peaks) { this.peaks = peaks; this.draw(); }

  toggle() { this.audio.paused ? this.audio.play().catch(() => {}) : this.audio.pause(); }

  seek(seconds) {
    this.audio.currentTime = Math.max(0, Math.min(seconds, this.duration() || 0));
    this.draw();
  }

  stop() { this.audio.pause(); this.audio.removeAttribute("src"); this.audio.load(); }

  sync() {
    const playing = !this.audio.paused && !this.audio.ended;
    this.icon.setAttribute("d", playing ? "M6 5h4v14H6zM14 5h4v14h-4z" : "M8 5v14l11-7z");
    this.button.setAttribute("aria-label", playing ? "Pause" : "Play");
    this.draw();
  }

  draw() {
    const { canvas } = this;
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
    const g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    g.clearRect(0, 0, w, h);
    const total = this.duration() * 1000 || this.durationMs || 1;
    g.fillStyle = "#fde2e2";
    for (const gap of this.gaps) {
      g.fillRect((gap.start_ms / total) * w, 0, Math.max(1, (gap.duration_ms / total) * w), h);
    }
    const played = (this.audio.currentTime * 1000) / total;
    const mid = h / 2;
    if (this.peaks) {
      const [near, far = near] = this.peaks.peaks;
      const n = near.length, bar = w / n;
      const loudest = Math.max(8, ...near, ...far);  // quiet calls still fill the height
      for (let i = 0; i < n; i++) {
        const x = i * bar, done = i / n < played;
        g.fillStyle = done ? css("--near") : "#b7c6f5";
        const up = Math.max(1, (near[i] / loudest) * (mid - 2));
        g.fillRect(x, mid - up, Math.max(1, bar - 0.6), up);
        g.fillStyle = done ? css("--far") : "#a9dcc9";
        const down = Math.max(1, (far[i] / loudest) * (mid - 2));
        g.fillRect(x, mid, Math.max(1, bar - 0.6), down);
      }
    } else {
      g.fillStyle = "#dfe5f1"; g.fillRect(0, mid - 1, w, 2);
    }
    g.fillStyle = "#101a33";
    g.fillRect(Math.min(w - 2, played * w), 0, 2, h);
    const now = this.audio.currentTime;
    this.time.textContent = `${formatClock(now)} / ${formatClock(this.duration())}`;
    this.canvas.setAttribute("aria-valuenow", String(Math.round(now)));
    this.canvas.setAttribute("aria-valuetext", `${formatClock(now)} of ${formatClock(this.duration())}`);
  }
}
