// Keys 1-4 press the matching vote button; typing in a text field never votes.
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT" || target.tagName === "SELECT")) return;
    var button = document.querySelector('#vote-form button[data-key="' + event.key + '"]');
    if (button) {
      event.preventDefault();
      button.click();
    }
  });
})();
