/* The replay player of the run page and the compare page: Previous step, Play, Pause and Next step, the
scrubber, the ← and → keys, and ?step=N in the address.

The player owns the position and its controls (#prev-step, #play, #pause, #next-step, #scrubber,
#step-position); the page says where the steps start and end (they may grow while a run is live) and draws
a step in its render callback:

  var player = CMOPlayer.create({
    first: function () { return 0; },          // the first position
    last: function () { return 4; },           // the last one; below first() means there is none yet
    current: 3,                                // where the page was rendered
    label: function (current, last) { return "Step " + current + " of " + last; },
    render: function (current, moved) { ... }  // moved: the user (or Play) moved, not a refresh
  });
  player.go(2);      // move as the user does (stops Play, keeps ?step=2 in the address)
  player.move(2);    // the same, but Play goes on from there
  player.set(4);     // put the position at 4 without drawing (a live page draws on its next refresh)
  player.refresh();  // draw the current position again, the address untouched
*/
(function () {
  "use strict";
  var INTERVAL = 700; /* ms between steps while playing */

  function create(opts) {
    var $ = function (id) { return document.getElementById(id); };
    var scrubber = $("scrubber"), position = $("step-position");
    var prevBtn = $("prev-step"), nextBtn = $("next-step"), playBtn = $("play"), pauseBtn = $("pause");
    var current = opts.current;
    var playing = null;

    function empty() { return opts.last() < opts.first(); }
    function clamp(index) { return Math.max(opts.first(), Math.min(opts.last(), index)); }

    function controls() {
      var first = opts.first(), last = opts.last(), none = empty();
      scrubber.min = String(first);
      scrubber.max = String(Math.max(last, first));
      scrubber.disabled = none;
      scrubber.value = String(none ? first : current);
      position.textContent = opts.label(current, last);
      prevBtn.disabled = none || current <= first;
      if (playing === null) playBtn.disabled = none; /* nothing to play until a step is committed */
      nextBtn.disabled = none || current >= last;
    }
    function draw(moved) {
      controls();
      opts.render(current, moved);
      if (moved) {
        var url = new URL(window.location.href);
        url.searchParams.set("step", String(current));
        window.history.replaceState(null, "", url);
      }
    }
    function move(index) {
      if (empty()) return;
      current = clamp(index);
      draw(true);
    }
    function stop() {
      if (playing !== null) { clearInterval(playing); playing = null; }
      playBtn.disabled = false; pauseBtn.disabled = true;
    }
    function go(index) { stop(); move(index); }

    prevBtn.addEventListener("click", function () { go(current - 1); });
    nextBtn.addEventListener("click", function () { go(current + 1); });
    scrubber.addEventListener("input", function () { go(parseInt(scrubber.value, 10)); });
    playBtn.addEventListener("click", function () {
      if (current >= opts.last()) move(opts.first());
      playBtn.disabled = true; pauseBtn.disabled = false; pauseBtn.focus();
      playing = setInterval(function () {
        if (current >= opts.last()) { stop(); playBtn.focus(); return; }
        move(current + 1);
      }, INTERVAL);
    });
    pauseBtn.addEventListener("click", function () { stop(); playBtn.focus(); });
    document.addEventListener("keydown", function (ev) {
      var t = ev.target;
      /* form fields keep their keys (the scrubber moves itself and fires "input") */
      if (ev.altKey || ev.ctrlKey || ev.metaKey || (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable))) return;
      /* a focused block that scrolls sideways (a wide state, a table at phone width) keeps its arrow keys */
      if (t && t !== document.body && t.getAttribute && t.getAttribute("tabindex") === "0" && t.scrollWidth > t.clientWidth) return;
      if (ev.key === "ArrowRight") { go(current + 1); ev.preventDefault(); }
      else if (ev.key === "ArrowLeft") { go(current - 1); ev.preventDefault(); }
    });

    return {
      go: go,
      move: move,
      set: function (index) { current = index; },
      refresh: function () { draw(false); },
      position: function () { return current; }
    };
  }

  window.CMOPlayer = { create: create };
})();
